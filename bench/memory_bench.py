"""Peak memory of a fleet worker on live 4K streams, with the frame memory budget and without (issue 22, item 5).

Input: one generated video (3840x2160, 30 frames/s, 3 moving shapes, a key frame every 2 s, so one
Kinesis Video fragment of 60 frames every 2 s, as the issue's camera), put into K streams of the local
Kinesis Video endpoint in real time (`put_file(realtime=True)`, as `kinase stream put --realtime`).
The worker is `python -m worker.fleet` holding the K streams' leases (the fleet task: 2 GiB for up
to 8 streams, infra/naming.py TASK_MEMORY_MIB), reading from NOW (live frames, the ones the live
policy may drop), with models/shapes-yolo11n.pt at imgsz 640 converted for ONNX Runtime (fp32, once,
into the user's model cache, as the image build converts it), slower than a 30 frames/s camera on
one core, as YOLO on a Fargate vCPU is: inference is not what is measured, the decoded 4K frames
waiting for it are.

For each K (1, 4), one run each, in one process run:

  budget   KINASE_FRAME_MEMORY_MB=BUDGET_MB: what the fleet task gets by default (a quarter of 2 GiB).
  off      KINASE_FRAME_MEMORY_MB=0: no worker-wide bound, each live stream queues up to 64 frames
           (the behaviour before the budget).

Fair: moto (S3, SQS, DynamoDB) and the Kinesis Video endpoint, and this process's PutMedia uploads, run
on the first core; the measured worker on the other core(s) (os.sched_setaffinity), as in
bench/fleet_bench.py. The worker gets SIGTERM a few seconds after the last frame is put.

Figures per run: peak RSS (the worker's VmHWM), the worker's FrameBytesPeak (the most bytes of
decoded frames that waited at once), and the frames read, delivered, dropped and unfinished (from the
streams' summaries; read = the sum of the outcomes, checked). Then budget / off peak RSS per K.

Target: peak RSS with the budget within the fleet task's memory at K=4.

Usage: python -m bench.memory_bench [--seconds 6] [--streams 1,4] [--budget-mb 512]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.fleet_bench import Stack
from bench.worker_bench import ROOT, cores, peak_rss_mb, ratio_row, start_server
from kinase_cli.local.stack import KVS, MOTO

FPS = 30
SIZE = (3840, 2160)
GOP_SECONDS = 2
TAIL = 4.0  # seconds after the last frame is put before the worker gets SIGTERM
BUDGET_MB = 512  # infra/naming.py TASK_MEMORY_MIB (2048) / worker.framebudget.SHARE
WEIGHTS = ROOT / "models" / "shapes-yolo11n.pt"
IMGSZ = 640
SUMMARY = re.compile(
    r"summary: (\S+): read (\d+) = delivered (\d+), sampled out (\d+), dropped (\d+), gapped (\d+), corrupt (\d+), unfinished (\d+), released (\d+)"
)


class Worker:
    """The fleet worker process, pinned to the measured cores, with its peak RSS sampled while it runs."""

    def __init__(self, work: Path, env: dict, on: set[int]):
        self.out, self.err = work / f"out-{time.time_ns()}.log", work / f"err-{time.time_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.fleet"],
            env=env,
            cwd=ROOT,
            stdout=open(self.out, "w"),
            stderr=open(self.err, "w"),
            preexec_fn=lambda: os.sched_setaffinity(0, on),
        )
        self.rss = 0
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self.proc.poll() is None:
            self.rss = max(self.rss, peak_rss_mb(self.proc.pid))
            time.sleep(0.1)

    def wait_for(self, condition, what: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.err.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker is not {what}:\n{self.err.read_text()[-3000:]}")
            time.sleep(0.2)

    def finish(self, timeout: float = 120.0) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError(f"the worker did not stop:\n{self.err.read_text()[-3000:]}") from None
        self._sampler.join()
        if code != 0:
            raise RuntimeError(f"the worker exited {code}:\n{self.err.read_text()[-3000:]}")
        return self.out.read_text(), self.err.read_text()


def run(stack: Stack, work: Path, video: Path, k: int, budget_mb: int, on: set[int]) -> dict:
    from worker.fleet.leases import LeaseTable
    from worker.settings import environment

    tag = f"mb{time.time_ns() % 10**10}"
    streams = [f"{tag}-{i}" for i in range(k)]
    stack.s3.create_bucket(Bucket=tag)
    queue = stack.sqs.create_queue(QueueName=tag)["QueueUrl"]
    stack.dynamodb.create_table(
        TableName=tag,
        AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table = LeaseTable(stack.dynamodb, tag)
    for stream in streams:
        stack.video.create_stream(StreamName=stream, DataRetentionInHours=1)
        table.ensure(stream)
    settings = environment(
        bucket=tag,
        queue_url=queue,
        model=WEIGHTS,
        imgsz=IMGSZ,
        device="cpu",
        backend="onnxruntime",
        start="NOW",
        lease_table=tag,
        max_streams=k,
        env=tag,
        frame_memory_mb=budget_mb,
        metrics_interval=600,
    )
    worker = Worker(work, {**stack.env, **settings}, on)
    worker.wait_for(lambda text: all(re.search(rf"GetMedia {s} from", text) for s in streams), "reading every stream")
    time.sleep(2.0)  # the GetMedia calls from NOW are answered before the first fragment is put
    putters = [threading.Thread(target=stack.put, args=(stream, video)) for stream in streams]
    for putter in putters:
        putter.start()
    for putter in putters:
        putter.join()
    time.sleep(TAIL)
    stdout, stderr = worker.finish()
    stack.drain(queue)
    counts = [tuple(int(x) for x in m.groups()[1:]) for m in SUMMARY.finditer(stderr)]
    if len(counts) != k:
        raise RuntimeError(f"{len(counts)} stream summaries for {k} streams:\n{stderr[-3000:]}")
    read = sum(c[0] for c in counts)
    outcomes = [sum(c[i] for c in counts) for i in range(1, 8)]
    peaks = [json.loads(line).get("FrameBytesPeak", 0) for line in stdout.splitlines() if '"FrameBytesPeak"' in line]
    return {
        "k": k,
        "budget_mb": budget_mb,
        "rss_mb": worker.rss,
        "waiting_mb": max(peaks, default=0) / (1 << 20),
        "read": read,
        "delivered": outcomes[0],
        "dropped": outcomes[2],
        "unfinished": outcomes[5],
        "accounted": read == sum(outcomes),
    }


def main(seconds: int = 6, streams: tuple[int, ...] = (1, 4), budget_mb: int = BUDGET_MB) -> dict:
    from infra.naming import TASK_MEMORY_MIB
    from kinase_cli.workflows.samples import shapes_video
    from worker.detector import convert

    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    servers, measured = cores()
    work = Path(tempfile.mkdtemp(prefix="kinase-memory-bench-"))
    results: list[dict] = []
    try:
        print(f"preparing: {seconds} s of {SIZE[0]}x{SIZE[1]} at {FPS} frames/s (worker on CPU {sorted(measured)})", flush=True)
        video = work / "camera-4k.mp4"
        shapes_video(video, frames=seconds * FPS, fps=FPS, size=SIZE, seed=31, shapes=3, gop=GOP_SECONDS * FPS)
        if convert.main([str(WEIGHTS), "--imgsz", str(IMGSZ), "--backends", "onnxruntime"]) != 0:
            raise RuntimeError("conversion failed")
        moto, aws = start_server(MOTO, work, servers)
        kvs, kvs_url = start_server(KVS, work, servers)
        os.sched_setaffinity(0, servers)  # the PutMedia uploads stay off the worker's cores
        try:
            stack = Stack(aws, kvs_url)
            for k in streams:
                for mb in (budget_mb, 0):
                    r = run(stack, work, video, k, mb, measured)
                    results.append(r)
                    print(
                        f"K={k} {'budget ' + str(mb) + ' MB' if mb else 'off':<15} peak RSS {r['rss_mb']:5d} MB, frames waiting at most "
                        f"{r['waiting_mb']:6.0f} MB, read {r['read']}, delivered {r['delivered']}, dropped {r['dropped']}",
                        flush=True,
                    )
        finally:
            os.sched_setaffinity(0, servers | measured)
            for proc in (kvs, moto):
                proc.terminate()
                proc.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{seconds} s of {SIZE[0]}x{SIZE[1]} at {FPS} frames/s per stream (key frame every {GOP_SECONDS} s), worker on CPU {sorted(measured)}"
    )
    print(
        f"{'K':>2} {'frame memory':<14} {'peak RSS MB':>11} {'waiting MB':>10} {'read':>5} {'dlvrd':>5} {'dropped':>7} {'unfin.':>6} {'acct':>5}"
    )
    for r in results:
        label = f"{r['budget_mb']} MB" if r["budget_mb"] else "off"
        print(
            f"{r['k']:>2} {label:<14} {r['rss_mb']:>11} {r['waiting_mb']:>10.0f} {r['read']:>5} {r['delivered']:>5} "
            f"{r['dropped']:>7} {r['unfinished']:>6} {'ok' if r['accounted'] else 'NO':>5}"
        )
    by = {(r["k"], r["budget_mb"]): r for r in results}
    rows = []
    for k in streams:
        on, off = by[(k, budget_mb)], by[(k, 0)]
        rows.append(
            (
                f"peak RSS budget / off, K={k}",
                f"{on['rss_mb'] / off['rss_mb']:.2f}x",
                "report",
                "met",
                f"{on['rss_mb']} vs {off['rss_mb']} MB",
            )
        )
    k = max(streams)
    rows.append(ratio_row(f"peak RSS with the budget, K={k}", by[(k, budget_mb)]["rss_mb"], TASK_MEMORY_MIB, unit="MB", higher=False))
    print(f"\n{'target':<36} {'figure':>10} {'target':>10}  {'verdict':<7} by how much")
    for name, shown, target, verdict, how in rows:
        print(f"{name:<36} {shown:>10} {target:>10}  {verdict:<7} {how}")
    return {"results": results, "rows": rows}


if __name__ == "__main__":
    from worker.settings import var

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6, help="seconds of video per stream")
    parser.add_argument("--streams", default="1,4", help="stream counts K")
    parser.add_argument("--budget-mb", type=int, default=BUDGET_MB, help=f"{var('frame_memory_mb')} of the budget runs")
    args = parser.parse_args()
    main(args.seconds, tuple(int(k) for k in args.streams.split(",")), args.budget_mb)

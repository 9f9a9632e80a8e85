"""One fleet worker reading K live streams against K one-stream workers on the same input (issue 14),
and cross-stream batching against none (issue 15, item 8).

Input: the events video (kinase_cli/workflows/event_samples.py `events_video`: 640x480, 5 frames/s,
shapes crossing its line and zone, one key frame a second, so one Kinesis Video fragment a second;
its RULES are published to each run's bucket before the workers start), put into K streams of the local Kinesis Video endpoint in real
time (`put_file(realtime=True)`, as `kinase stream put --realtime` does: PutMedia, paced like a
camera). Weights: models/shapes-yolo11n.pt, converted once as the image build converts it (a
dynamic batch axis, so batching is possible); the backend `auto` picks on the measured cores is
then forced on every run, so all of them run the same network (`--backend NAME` forces one for
every run, so that runs on different days compare).

For each K (1, 2, 4, 8), one run each, on the same streams' content:

  single        K one-stream workers (`python -m worker`, worker/main.py), one process per stream.
  fleet         one fleet worker (`python -m worker.fleet`) holding the K streams' leases.
  fleet batch   the same with KINASE_BATCH=N (K > 1 only).

Fair: moto (S3, SQS, DynamoDB) and the Kinesis Video endpoint, and this process's PutMedia
uploads, run on the first core; every measured worker process on the other core(s)
(os.sched_setaffinity), as in bench/worker_bench.py. Workers read from EARLIEST (nothing is lost
while they connect) and get SIGTERM a few seconds after the last frame is put.

Figures per run: processed fps (frames delivered over the seconds of video put: K x 5 when the
workers keep up), p95 and max
latency (the messages' `latency_ms`: producer time of the frame to message send; a frame waits up to
a fragment, 1 s, before it can be read at all), frames dropped (the workers' summaries: read =
delivered + sampled out + dropped + gapped + corrupt + unfinished, checked), CPU seconds per
delivered frame (the workers' processes) and peak RSS (summed over a run's processes). Frames put
but never read before the stop (`unread`: a worker that falls behind reads the stream's backlog
late) are shown beside them. Then the
detector alone: ms per frame for batch 1, 2, 4, 8 on the measured cores.

Event latency (issue 24 item 7): each run has an events topic with an events queue subscribed raw
(as the storage stack makes them); per event, the producer time of its frame (the event's `time`) to
its arrival in the queue (SQS's SentTimestamp), p50 and p95. It adds up the frame's wait in its
fragment, the read, inference, the upload and the publish. Target: p95 < 3 s at 4 streams per vCPU.

Targets (issue 14): fleet throughput >= 0.9x the one-stream workers' at each K; the streams per
vCPU up to which the fleet's p95 latency stays under 2 s is reported (drops beside it).

Usage: python -m bench.fleet_bench [--seconds 15] [--streams 1,2,4,8] [--batch 4] [--backend auto] [--quick]
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
import types
from pathlib import Path

from bench.worker_bench import CREDENTIALS, PT, ROOT, _creds, cores, peak_rss_mb, ratio_row, start_server
from kinase_cli.local.stack import KVS, MOTO

FPS = 5
SIZE = (640, 480)
TAIL = 4.0  # seconds after the last frame is put before the workers get SIGTERM
LATENCY_TARGET_MS = 2000.0
EVENT_TARGET_MS = 3000.0  # issue 24 item 7: event p95 at 4 streams per vCPU
EVENT_TARGET_PER_VCPU = 4
SUMMARY = re.compile(
    r"summary: (\S+): read (\d+) = delivered (\d+), sampled out (\d+), dropped (\d+), gapped (\d+), corrupt (\d+), unfinished (\d+)"
)


class Stack:
    """The clients of the local stack this benchmark started."""

    def __init__(self, aws: str, kvs: str):
        import boto3

        self.aws, self.kvs = aws, kvs
        self.session = boto3.Session(**_creds())
        self.s3 = self.session.client("s3", endpoint_url=aws)
        self.sqs = self.session.client("sqs", endpoint_url=aws)
        self.sns = self.session.client("sns", endpoint_url=aws)
        self.dynamodb = self.session.client("dynamodb", endpoint_url=aws)
        self.video = self.session.client("kinesisvideo", endpoint_url=kvs)
        self.env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": aws, "AWS_ENDPOINT_URL_KINESIS_VIDEO": kvs, "YOLO_OFFLINE": "1"}

    def put(self, stream: str, video: Path) -> None:
        from kinase_cli.aws.kvs_put import put_file

        client = {"kinesisvideo": self.video}
        target = types.SimpleNamespace(client=client.__getitem__, session=self.session, region_name="us-east-1")
        put_file(target, video, stream, realtime=True)

    def drain(self, queue: str) -> list[dict]:
        found = []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return found
            found += [json.loads(m["Body"]) for m in got]
            self.sqs.delete_message_batch(
                QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            )

    def events_topic(self, name: str) -> tuple[str, str]:
        """The environment's events topic with its events queue subscribed raw, as the storage stack makes them."""
        topic = self.sns.create_topic(Name=name)["TopicArn"]
        queue = self.sqs.create_queue(QueueName=name + "-events")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        return topic, queue

    def event_latencies(self, queue: str) -> list[float]:
        """Per event, ms from the producer time of its frame (the event's `time`) to its arrival in the events
        queue (SQS's SentTimestamp); by event_id, as delivery is at least once."""
        from datetime import datetime

        found: dict[str, float] = {}
        while True:
            got = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["SentTimestamp"]).get("Messages", [])
            if not got:
                return sorted(found.values())
            for m in got:
                event = json.loads(m["Body"])
                made = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp() * 1000
                found[event["event_id"]] = int(m["Attributes"]["SentTimestamp"]) - made
            self.sqs.delete_message_batch(
                QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
            )


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


class Measured:
    """Worker processes pinned to the measured cores: their output, CPU seconds and peak RSS."""

    def __init__(self, work: Path, on: set[int]):
        self.work, self.on = work, on
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.cpu = 0.0
        self.rss: dict[int, int] = {}
        self._watching = True
        self._watch = threading.Thread(target=self._sample_rss, daemon=True)

    def start(self, argv: list[str], env: dict) -> None:
        log = self.work / f"worker-{len(self.procs)}-{time.time_ns()}.log"
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log, "w"), preexec_fn=lambda: os.sched_setaffinity(0, self.on)
        )
        self.procs.append((proc, log))
        if not self._watch.is_alive():
            self._watch.start()

    def _sample_rss(self) -> None:
        while self._watching:
            for proc, _ in list(self.procs):
                self.rss[proc.pid] = max(self.rss.get(proc.pid, 0), peak_rss_mb(proc.pid))
            time.sleep(0.2)

    def logs(self) -> str:
        return "".join(log.read_text() for _, log in self.procs)

    def wait_for(self, condition, what: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.logs()):
            if any(proc.poll() is not None for proc, _ in self.procs):
                raise RuntimeError(f"a worker ended before {what}:\n{self.logs()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not {what} within {timeout:.0f}s:\n{self.logs()[-3000:]}")
            time.sleep(0.2)

    def finish(self, timeout: float = 120.0) -> str:
        """SIGTERM (the workers flush, checkpoint and log their summaries), then reap."""
        for proc, _ in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    self.cpu += usage.ru_utime + usage.ru_stime
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"worker {proc.pid} did not stop:\n{self.logs()[-3000:]}")
                time.sleep(0.05)
            if proc.returncode != 0:
                raise RuntimeError(f"worker exited {proc.returncode}:\n{self.logs()[-3000:]}")
        self._watching = False
        return self.logs()


def run(
    stack: Stack, work: Path, video: Path, seconds: int, weights: Path, backend: str, k: int, mode: str, batch: int, on: set[int]
) -> dict:
    from kinase_cli.workflows.event_samples import RULES
    from worker import rules
    from worker.settings import environment

    tag = f"fb{time.time_ns() % 10**10}"
    streams = [f"{tag}-{i}" for i in range(k)]
    stack.s3.create_bucket(Bucket=tag)
    queue = stack.sqs.create_queue(QueueName=tag)["QueueUrl"]
    topic, events_queue = stack.events_topic(tag)
    rules.publish(stack.s3, tag, RULES, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for stream in streams:
        stack.video.create_stream(StreamName=stream, DataRetentionInHours=1)
    common = dict(
        bucket=tag,
        queue_url=queue,
        model=weights,
        imgsz=SIZE[0],
        device="cpu",
        backend=backend,
        start="EARLIEST",
        metrics_interval=600,
        events_topic_arn=topic,
    )
    measured = Measured(work, on)
    if mode == "single":
        for stream in streams:
            env = {**stack.env, **environment(source=f"kvs://{stream}", **common)}
            measured.start([sys.executable, "-m", "worker"], env)
    else:
        from worker.fleet.leases import LeaseTable

        stack.dynamodb.create_table(
            TableName=tag,
            AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        table = LeaseTable(stack.dynamodb, tag)
        for stream in streams:
            table.ensure(stream)
        settings = environment(lease_table=tag, max_streams=k, env=tag, batch=batch if mode == "fleet batch" else 1, **common)
        measured.start([sys.executable, "-m", "worker.fleet"], {**stack.env, **settings})
    measured.wait_for(lambda text: all(f"reading kvs://{s}" in text for s in streams), "reading every stream")
    load = os.getloadavg()[0]
    putters = [threading.Thread(target=stack.put, args=(stream, video)) for stream in streams]
    for putter in putters:
        putter.start()
    for putter in putters:
        putter.join()
    time.sleep(TAIL)
    logs = measured.finish()
    messages = stack.drain(queue)
    summaries = [tuple(int(x) for x in m.groups()[1:]) for m in SUMMARY.finditer(logs)]
    if len(summaries) != k:
        raise RuntimeError(f"{len(summaries)} stream summaries for {k} streams:\n{logs[-3000:]}")
    read = sum(s[0] for s in summaries)
    outcomes = [sum(s[i] for s in summaries) for i in range(1, 7)]
    latencies = sorted(m["latency_ms"] for m in messages)
    event_ms = stack.event_latencies(events_queue)
    batching = re.search(r"batching: (.*)", logs)
    return {
        "k": k,
        "put": k * seconds * FPS,
        "mode": mode,
        "fps": outcomes[0] / seconds,
        "p95_ms": percentile(latencies, 0.95),
        "events": len(event_ms),
        "event_p50_ms": percentile(event_ms, 0.5),
        "event_p95_ms": percentile(event_ms, 0.95),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "read": read,
        "delivered": outcomes[0],
        "dropped": outcomes[2],
        "unfinished": outcomes[5],
        "accounted": read == sum(outcomes),
        "messages": len(messages),
        "cpu_per_frame": measured.cpu / max(outcomes[0], 1),
        "rss_mb": sum(measured.rss.values()),
        "load": load,
        "batching": batching.group(1) if batching else "",
    }


def batch_table(weights: Path, backends: list[str], on: set[int], sizes=(1, 2, 4, 8), runs: int = 5) -> dict[str, dict[int, float]]:
    """Each backend's detector alone: median ms per 640x480 frame at each batch size (letterbox,
    network, decoding, NMS; one `detect_batch` call divided by its frames)."""
    import statistics

    import cv2

    from kinase_cli.workflows.samples import shapes_video
    from worker import detector as detectors
    from worker.detector.convert import Refused

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frames.mp4"
        shapes_video(path, frames=max(sizes), fps=FPS, size=SIZE, seed=5, shapes=3)
        cap = cv2.VideoCapture(str(path))
        frames = [cap.read()[1] for _ in range(max(sizes))]
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, on)
    try:
        table: dict[str, dict[int, float]] = {}
        for backend in backends:
            try:
                detector = detectors.load(str(weights), imgsz=SIZE[0], backend=backend, device="cpu")
            except Refused as refused:  # int8 that lost accuracy on this model: no detector to time
                print(f"{backend}: not timed ({refused})", flush=True)
                continue
            table[backend] = {}
            for n in sizes:
                batch = frames[:n]
                detector.detect_batch(batch)  # compiles or allocates for this shape
                times = []
                for _ in range(runs):
                    started = time.perf_counter()
                    detector.detect_batch(batch)
                    times.append((time.perf_counter() - started) * 1000.0 / n)
                table[backend][n] = float(statistics.median(times))
            del detector
        return table
    finally:
        os.sched_setaffinity(0, before)


def prepare(work: Path, seconds: int) -> tuple[Path, Path]:
    """The camera video and the weights, converted into the user's model cache (kept between runs, as
    the image build keeps its conversions)."""
    from kinase_cli.workflows.event_samples import events_video
    from kinase_cli.workflows.samples import shapes_dataset
    from worker.detector import convert

    video = work / "camera.mp4"
    events_video(video, fps=FPS, duration=seconds, size=SIZE, gop=FPS)
    weights = work / PT.name
    shutil.copy(PT, weights)
    calibration = shapes_dataset(work / "calibration", train=0, val=32, imgsz=SIZE[0], seed=101).parent / "images" / "val"
    argv = [str(weights), "--imgsz", str(SIZE[0]), "--backends", "onnxruntime,onnxruntime-int8", "--calibration", str(calibration)]
    if convert.main(argv) != 0:
        raise RuntimeError("conversion failed")
    return video, weights


def chosen_backend(weights: Path, on: set[int]) -> tuple[str, dict]:
    from worker import detector as detectors

    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, on)
    try:
        detector = detectors.load(str(weights), imgsz=SIZE[0], backend="auto", device="cpu")
        return detector.backend, detector.timings
    finally:
        os.sched_setaffinity(0, before)


def main(seconds: int = 15, streams: tuple[int, ...] = (1, 2, 4, 8), batch: int = 4, quick: bool = False, backend: str = "auto") -> dict:  # noqa: C901 a script: one run per stream count, each printed as it ends
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    servers, measured = cores()
    vcpus = len(measured)
    work = Path(tempfile.mkdtemp(prefix="kinase-fleet-bench-"))
    results: list[dict] = []
    try:
        print(
            f"preparing: video, converted model (servers and uploads on CPU {sorted(servers)}, workers on CPU {sorted(measured)})",
            flush=True,
        )
        video, weights = prepare(work, seconds)
        timings: dict[str, float] = {}
        if backend == "auto":
            backend, timings = chosen_backend(weights, measured)
            print(
                f"backend (auto on CPU {sorted(measured)}): {backend}; warm-up ms { ({k: round(v, 1) for k, v in timings.items()}) }",
                flush=True,
            )
        names = list(dict.fromkeys([backend, *timings, "onnxruntime", "onnxruntime-int8"]))
        batches = batch_table(weights, names, measured, runs=3 if quick else 5)
        moto, aws = start_server(MOTO, work, servers)
        kvs, kvs_url = start_server(KVS, work, servers)
        os.sched_setaffinity(0, servers)  # the PutMedia uploads stay off the workers' cores
        try:
            stack = Stack(aws, kvs_url)
            for k in streams:
                for mode in ("single", "fleet", *(["fleet batch"] if k > 1 and batch > 1 else [])):
                    r = run(stack, work, video, seconds, weights, backend, k, mode, batch, measured)
                    results.append(r)
                    print(
                        f"K={k} {mode:<11} {r['fps']:5.1f} fps, p95 {r['p95_ms']:6.0f} ms, events {r['events']} p50/p95 {r['event_p50_ms']:.0f}/{r['event_p95_ms']:.0f} ms, dropped {r['dropped']}, "
                        f"delivered {r['delivered']}/{r['read']} (load {r['load']:.1f})",
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
        f"\n{len(streams)} stream counts, {seconds} s of 640x480 at {FPS} frames/s per stream, backend {backend}, workers on {vcpus} vCPU"
    )
    print(
        f"{'K':>2} {'run':<12} {'input fps':>9} {'fps':>6} {'p95 ms':>7} {'max ms':>7} {'put':>5} {'unread':>6} {'read':>5} "
        f"{'dlvrd':>5} {'dropped':>7} {'unfin.':>6} {'acct':>5} {'CPU s/frame':>11} {'RSS MB':>7} {'events':>6} {'ev p50':>6} {'ev p95':>6}"
    )
    for r in results:
        print(
            f"{r['k']:>2} {r['mode']:<12} {r['k'] * FPS:>9} {r['fps']:>6.1f} {r['p95_ms']:>7.0f} {r['max_ms']:>7.0f} {r['put']:>5} {r['put'] - r['read']:>6} {r['read']:>5} {r['delivered']:>5} {r['dropped']:>7} "
            f"{r['unfinished']:>6} {'ok' if r['accounted'] else 'NO':>5} {r['cpu_per_frame']:>11.4f} {r['rss_mb']:>7.0f} "
            f"{r['events']:>6} {r['event_p50_ms']:>6.0f} {r['event_p95_ms']:>6.0f}"
        )
    for r in results:
        if r["batching"]:
            print(f"K={r['k']} fleet batch: {r['batching']}")
    print(f"\ndetector alone on CPU {sorted(measured)}, ms per 640x480 frame by batch size:")
    for name, row in batches.items():
        print(f"{name:<18} " + ", ".join(f"batch {n}: {ms:.1f}" for n, ms in row.items()))

    by = {(r["k"], r["mode"]): r for r in results}
    rows = []
    for k in streams:
        fleet, single = by[(k, "fleet")], by[(k, "single")]
        rows.append(ratio_row(f"fleet / single fps, K={k}", fleet["fps"] / single["fps"], 0.9))
    within = 0
    for k in streams:  # the largest K up to which every K measured stays under the target
        if by[(k, "fleet")]["p95_ms"] >= LATENCY_TARGET_MS:
            break
        within = k
    per_vcpu = within / vcpus
    rows.append(("fleet streams per vCPU, p95 < 2 s", f"{per_vcpu:g}", "report", "met" if within else "MISSED", f"of K in {list(streams)}"))
    for k in streams:
        p95, per = by[(k, "fleet")]["event_p95_ms"], k / vcpus
        if per == EVENT_TARGET_PER_VCPU:
            verdict = "met" if p95 < EVENT_TARGET_MS else "MISSED"
            rows.append(
                (
                    f"fleet event p95, {per:g} streams/vCPU",
                    f"{p95:.0f} ms",
                    f"< {EVENT_TARGET_MS:.0f} ms",
                    verdict,
                    f"{p95 - EVENT_TARGET_MS:+.0f} ms",
                )
            )
        else:
            rows.append((f"fleet event p95, {per:g} streams/vCPU", f"{p95:.0f} ms", "report", "met", "target at 4/vCPU"))
    for k in streams:
        if (k, "fleet batch") in by:
            rows.append(
                (
                    f"fleet batch {batch} / batch 1 fps, K={k}",
                    f"{by[(k, 'fleet batch')]['fps'] / by[(k, 'fleet')]['fps']:.2f}x",
                    "report",
                    "met",
                    "",
                )
            )
    for name, row in batches.items():
        rows.append(
            (f"{name} batch {max(row)} / batch 1 ms", f"{row[max(row)] / row[1]:.2f}x", "report", "met", "per frame, detector alone")
        )
    print(f"\n{'target':<36} {'figure':>10} {'target':>10}  {'verdict':<7} by how much")
    for name, shown, target, verdict, how in rows:
        print(f"{name:<36} {shown:>10} {target:>10}  {verdict:<7} {how}")
    return {"results": results, "rows": rows, "batches": batches, "backend": backend, "per_vcpu": per_vcpu}


if __name__ == "__main__":
    from worker.settings import var

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="seconds of video per stream")
    parser.add_argument("--streams", default="1,2,4,8", help="stream counts K")
    parser.add_argument("--batch", type=int, default=4, help=f"{var('batch')} of the batched fleet runs (1: none)")
    parser.add_argument(
        "--backend", default="auto", help="auto (measured on the workers' cores, then forced) or one backend, for runs to compare"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: K = 1 and 2, 4 s of video each")
    args = parser.parse_args()
    if args.quick:
        main(seconds=4, streams=(1, 2), batch=args.batch, quick=True, backend=args.backend)
    else:
        main(args.seconds, tuple(int(k) for k in args.streams.split(",")), args.batch, backend=args.backend)

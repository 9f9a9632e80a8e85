"""The worker against `yolo predict` and against its own inference loop, on the same cores.

One generated video (640x480, 3 moving shapes, H.264), one set of weights
(models/shapes-yolo11n.pt), in one run, runs alternating:

  worker          `python -m worker` on the file with the `.pt` and KINASE_BACKEND=auto, end to
                  end: decode, inference, annotation, JPEG to S3, message to SQS (moto).
  predict pt      `yolo predict model=X.pt source=VIDEO save=False` (the Ultralytics CLI).
  predict onnx    the same on the weights exported to ONNX (`yolo export format=onnx dynamic=True`).
  loop            the worker's detector (the backend auto chose) alone over the decoded frames:
                  what the worker could reach with no pipeline around it.

Fair: the moto server answering the worker's S3 and SQS calls is pinned to its own core, and every
measured process to the other core(s) (os.sched_setaffinity), so ratios measure the pipeline, not
moto; on Fargate the storage services are not on the worker's cores either. The worker's converted
models are made before the runs, as the image build makes them (`python -m worker.detector.convert`,
int8 calibrated on the shapes model's generated validation images).

Per run: fps (steady state: worker = delivered frames over the span of their message times;
predict = 1000 / its pre + inference + post ms; loop = frames over the loop's time), whole-process
wall seconds (start-up and model load included), CPU seconds per frame (the whole process) and
peak RSS (VmHWM). Then every CPU backend alone on the measured cores: ms per frame, and mAP50 on
generated validation images with exact labels (the target compares the backend auto chose with
fp32 ONNX Runtime).

Targets (issue 15): worker >= 2x `yolo predict` .pt in whole-process wall time with mAP50 within
0.01; worker >= 0.9x its own loop (fps); worker peak RSS <= 1.5 GB.

Usage: python -m bench.worker_bench [--frames 150] [--imgsz 640] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from kinase_cli.local.stack import MOTO

ROOT = Path(__file__).resolve().parent.parent
PT = ROOT / "models" / "shapes-yolo11n.pt"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
RSS_LIMIT_MB = 1536


def cores() -> tuple[set[int], set[int]]:
    """(servers' cores, measured processes' cores): the first core for the servers, the rest for the
    measured; on one core both share it (and the report says so)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) == 1:
        return set(available), set(available)
    return {available[0]}, set(available[1:])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(server, work: Path, on: set[int]) -> tuple[subprocess.Popen, str]:
    """One of the local stack's servers (kinase_cli.local.stack.MOTO or KVS) on a free port, pinned to the
    cores `on` (never the measured ones), once its health path answers; the process and its URL."""
    port = free_port()
    url = f"http://localhost:{port}"
    log = work / f"{server.name}.log"
    proc = subprocess.Popen(
        server.argv(port), cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, preexec_fn=lambda: os.sched_setaffinity(0, on)
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(url + server.health_path, timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{server.module} did not start: see {log}")


def peak_rss_mb(pid: int) -> int:
    """VmHWM of a running process (its own peak, unlike ru_maxrss, which counts the parent's image at fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], env: dict, on: set[int]) -> dict:
    """Wall seconds, CPU seconds, peak RSS and output of one child process pinned to `on`."""
    started = time.perf_counter()
    peak = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, on))
        while True:
            peak = max(peak, peak_rss_mb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({code}):\n{stderr[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": peak, "stdout": stdout, "stderr": stderr}


def _creds() -> dict:
    return {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def worker(weights: Path, video: Path, imgsz: int, endpoint: str, frames: int, cache: Path, on: set[int]) -> dict:
    import boto3

    from worker.contract import parse_iso
    from worker.settings import environment

    s3 = boto3.client("s3", endpoint_url=endpoint, **_creds())
    sqs = boto3.client("sqs", endpoint_url=endpoint, **_creds())
    name = f"bench-{time.time_ns()}"
    s3.create_bucket(Bucket=name)
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        **environment(
            source=video, bucket=name, queue_url=queue, model=weights, imgsz=imgsz, device="cpu", backend="auto", model_cache=cache
        ),
        "YOLO_OFFLINE": "1",
    }
    result = run_measured([sys.executable, "-m", "worker"], env, on)
    stamps = []
    while len(stamps) < frames:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        stamps += [json.loads(m["Body"])["timestamp"] for m in got]
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    if len(stamps) != frames:
        raise RuntimeError(f"worker delivered {len(stamps)} of {frames} frames")
    times = sorted(parse_iso(t) for t in stamps)
    chosen = re.search(r"backend auto: ([\w-]+), ([\d.]+) ms", result["stderr"])
    result.update(
        fps=(len(times) - 1) / (times[-1] - times[0]), frames=len(times), backend=chosen.group(1), warmup_ms=float(chosen.group(2))
    )
    return result


def predict(model: Path, video: Path, imgsz: int, on: set[int]) -> dict:
    yolo = shutil.which("yolo", path=str(Path(sys.executable).parent)) or "yolo"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    argv = [yolo, "predict", f"model={model}", f"source={video}", "save=False", f"imgsz={imgsz}", "device=cpu"]
    result = run_measured(argv, env, on)
    speed = re.search(r"Speed: ([\d.]+)ms preprocess, ([\d.]+)ms inference, ([\d.]+)ms postprocess", result["stdout"] + result["stderr"])
    result["fps"] = 1000.0 / sum(float(x) for x in speed.groups())
    return result


def loop(weights: Path, video: Path, imgsz: int, backend: str, cache: Path, on: set[int]) -> dict:
    """The worker's detector alone, in its own process on the same cores."""
    argv = [sys.executable, "-m", "bench.worker_bench", "--loop", str(weights), str(video), str(imgsz), backend, str(cache)]
    result = run_measured(argv, {**os.environ, "YOLO_OFFLINE": "1"}, on)
    result.update(json.loads(result["stdout"].strip().splitlines()[-1]))
    return result


def loop_main(weights: str, video: str, imgsz: int, backend: str, cache: str) -> None:
    import cv2

    from worker import detector as detectors

    detector = detectors.load(weights, imgsz=imgsz, backend=backend, cache_dir=cache, device="cpu")
    cap = cv2.VideoCapture(video)
    images = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    started = time.perf_counter()
    for image in images:
        detector.detect(image)
    print(json.dumps({"fps": len(images) / (time.perf_counter() - started)}))


def prepare(work: Path, frames: int, imgsz: int) -> dict:
    """The video, the ONNX export for `yolo predict`, the worker's model cache (as the image build
    makes it) and a validation set with exact labels."""
    from ultralytics import YOLO

    from kinase_cli.workflows.samples import shapes_dataset, shapes_video
    from worker.detector import convert

    video = work / "bench.mp4"
    shapes_video(video, frames=frames, fps=15, size=(640, 480), seed=21, shapes=3)
    weights = work / PT.name
    shutil.copy(PT, weights)
    onnx = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, opset=17, simplify=True, dynamic=True, verbose=False))
    calibration = shapes_dataset(work / "calibration", train=0, val=64, imgsz=imgsz, seed=101).parent / "images" / "val"
    validation = shapes_dataset(work / "validation", train=0, val=60, imgsz=imgsz, seed=202).parent
    cache = work / "cache"
    argv = [str(weights), "--imgsz", str(imgsz), "--backends", "onnxruntime,onnxruntime-int8,openvino-int8"]
    if convert.main([*argv, "--calibration", str(calibration), "--cache", str(cache)]) != 0:
        raise RuntimeError("conversion failed")
    return {"video": video, "weights": weights, "onnx": onnx, "cache": cache, "validation": validation}


def backend_table(weights: Path, imgsz: int, cache: Path, validation: Path, on: set[int]) -> dict:
    """Every CPU backend on the measured cores: median ms per 640x480 frame (detect: letterbox,
    network, decoding, NMS) and mAP50 on the validation images."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.accuracy import evaluate, load_split
    from worker import detector as detectors
    from worker.detector.convert import Refused
    from worker.detector.ov import has_bf16

    images, truths = load_split(validation)
    names = ["onnxruntime", "onnxruntime-int8", "openvino", *(["openvino-bf16"] if has_bf16() else []), "openvino-int8", "pytorch"]
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, on)
    try:
        table = {}
        for name in names:
            try:
                detector = detectors.load(str(weights), imgsz=imgsz, backend=name, cache_dir=cache, device="cpu")
            except Refused as exc:
                print(f"{name}: {exc}")
                continue
            ms = detectors.measure(detector, detectors.probe_image(imgsz), runs=10)
            table[name] = {"ms": ms, "map50": evaluate(detector, images, truths)}
    finally:
        os.sched_setaffinity(0, before)
    return table


def ratio_row(name: str, value: float, target: float, unit: str = "x", higher: bool = True) -> tuple:
    met = value >= target if higher else value <= target
    if unit == "x":
        by = f"{value / target:.2f}x of target" if met else f"short by {target - value:.2f}x ({(1 - value / target) * 100:.0f}%)"
    else:
        by = f"{abs(target - value):.4g} {unit} to spare" if met else f"over by {abs(value - target):.4g} {unit}"
    shown = f"{value:.2f}x" if unit == "x" else f"{value:.4f}" if unit == "mAP" else f"{value:.0f} {unit}"
    return name, shown, ("≥ " if higher else "≤ ") + (f"{target}x" if unit == "x" else f"{target} {unit}"), "met" if met else "MISSED", by


def main(frames: int = 150, imgsz: int = 640, runs: int = 2) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    servers, measured = cores()
    work = Path(tempfile.mkdtemp(prefix="kinase-bench-"))
    try:
        print(
            f"preparing: video, ONNX export, converted models (servers on CPU {sorted(servers)}, measured on CPU {sorted(measured)})",
            flush=True,
        )
        prep = prepare(work, frames, imgsz)
        moto, endpoint = start_server(MOTO, work, servers)
        samples: dict[str, list[dict]] = {"worker": [], "predict pt": [], "predict onnx": [], "loop": []}
        load = []
        try:
            for i in range(runs):
                load.append(os.getloadavg()[0])
                w = worker(prep["weights"], prep["video"], imgsz, endpoint, frames, prep["cache"], measured)
                samples["worker"].append(w)
                samples["predict pt"].append(predict(prep["weights"], prep["video"], imgsz, measured))
                samples["predict onnx"].append(predict(prep["onnx"], prep["video"], imgsz, measured))
                samples["loop"].append(loop(prep["weights"], prep["video"], imgsz, w["backend"], prep["cache"], measured))
                print(f"run {i + 1}/{runs} done (worker chose {w['backend']}, load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            moto.terminate()
            moto.wait(10)
        backend = samples["worker"][-1]["backend"]
        table = backend_table(prep["weights"], imgsz, prep["cache"], prep["validation"], measured)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results = {
        name: {key: statistics.median(r[key] for r in rs) for key in ("fps", "wall_s", "cpu_s", "rss_mb")} for name, rs in samples.items()
    }
    backends = sorted({r["backend"] for r in samples["worker"]})
    print(f"\n{frames} frames 640x480, imgsz {imgsz}, medians of {runs} alternating runs; load average {min(load):.1f}-{max(load):.1f}")
    print(f"worker's backend (auto): {', '.join(backends)}; warm-up ms: {[round(r['warmup_ms'], 1) for r in samples['worker']]}")
    print(f"{'run':<14} {'fps':>7} {'wall s':>8} {'CPU s/frame':>12} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:<14} {r['fps']:>7.1f} {r['wall_s']:>8.2f} {r['cpu_s'] / frames:>12.4f} {r['rss_mb']:>12.0f}")
    print("(loop: wall and CPU include its start-up and decoding the video; its fps is the detector alone)")
    cpu = results["predict pt"]["cpu_s"] / results["worker"]["cpu_s"]
    print(f"CPU per frame: yolo predict .pt / worker = {cpu:.2f}x")

    print(f"\nbackends on CPU {sorted(measured)}: ms per {imgsz}x{imgsz * 3 // 4} frame (median of 10) and mAP50 on 60 validation images")
    for name, row in table.items():
        print(f"{name:<18} {row['ms']:>7.1f} ms {row['map50']:>8.4f}")
    scores = {name: row["map50"] for name, row in table.items()}
    drop = scores["onnxruntime"] - scores[backend]
    rows = [
        ratio_row("worker wall vs yolo predict .pt", results["predict pt"]["wall_s"] / results["worker"]["wall_s"], 2.0),
        ratio_row("worker wall vs yolo predict onnx", results["predict onnx"]["wall_s"] / results["worker"]["wall_s"], 1.0),
        ratio_row(f"mAP50 drop, {backend} vs fp32", drop, 0.01, unit="mAP", higher=False),
        ratio_row("worker fps vs its own loop", results["worker"]["fps"] / results["loop"]["fps"], 0.9),
        ratio_row("worker peak RSS", results["worker"]["rss_mb"], RSS_LIMIT_MB, unit="MB", higher=False),
    ]
    print(f"\n{'target':<36} {'figure':>10} {'target':>10}  {'verdict':<7} by how much")
    for name, shown, target, verdict, by in rows:
        print(f"{name:<36} {shown:>10} {target:>10}  {verdict:<7} {by}")
    return {"results": results, "rows": rows, "backends": table, "backend": backend}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loop"]:
        weights, video, imgsz, backend, cache = sys.argv[2:7]
        loop_main(weights, video, int(imgsz), backend, cache)
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    main(args.frames, args.imgsz, args.runs)

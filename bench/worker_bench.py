"""Worker throughput against the Ultralytics CLI and against its own pure inference.

One generated video, one set of weights (models/shapes-yolo11n.pt and the same weights exported
to ONNX with dynamic height and width, as the image does), in one run:

  worker      `python -m worker` on the file, end to end: decode, inference, annotate, JPEG to S3,
              message to SQS (a moto server started here). fps = delivered frames over the span of
              their message timestamps; `wall` includes start-up and model load.
  predict     `yolo predict source=VIDEO save=False` (the Ultralytics CLI); fps from its per-image
              speed line (pre + inference + post), `wall` includes start-up.
  inference   the worker's detector alone in a loop over the decoded frames (worker.detector).

CPU seconds are reported beside wall-clock rates: on a shared machine they change much less with
other load than fps does.

Targets (issue 3): worker with ONNX >= 2x `yolo predict` (PyTorch), worker >= 0.9x its own pure
inference, worker RSS <= 1.5 GB at 640.

Usage: python -m bench.worker_bench [--frames 150] [--imgsz 640]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PT = ROOT / "models" / "shapes-yolo11n.pt"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    endpoint = f"http://localhost:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "localhost", "-p", str(port)],
        stdout=open(work / "moto.log", "w"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


def peak_rss_mb(pid: int) -> int:
    """VmHWM of a running process (its own peak, unlike ru_maxrss, which counts the parent's image at fork)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def run_measured(argv: list[str], env: dict) -> tuple[float, float, int, str, str]:
    """(wall seconds, CPU seconds, peak RSS in MB, stdout, stderr) of one child process."""
    started = time.perf_counter()
    peak = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=ROOT)
        while True:
            peak = max(peak, peak_rss_mb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        cpu = usage.ru_utime + usage.ru_stime
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n{stderr[-2000:]}")
    return wall, cpu, peak, stdout, stderr


def worker(model: Path, video: Path, imgsz: int, endpoint: str, frames: int) -> dict:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, **_creds())
    sqs = boto3.client("sqs", endpoint_url=endpoint, **_creds())
    name = f"bench-{model.suffix[1:]}-{int(time.time())}"
    s3.create_bucket(Bucket=name)
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    env = {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "KINASE_SOURCE": str(video),
        "KINASE_BUCKET": name,
        "KINASE_QUEUE_URL": queue,
        "KINASE_MODEL": str(model),
        "KINASE_IMGSZ": str(imgsz),
        "KINASE_DEVICE": "cpu",
        "YOLO_OFFLINE": "1",
    }
    wall, cpu, rss, _, _ = run_measured([sys.executable, "-m", "worker"], env)
    stamps = []
    while len(stamps) < frames:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        stamps += [json.loads(m["Body"])["timestamp"] for m in got]
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    from worker.contract import parse_iso

    times = sorted(parse_iso(t) for t in stamps)
    span = times[-1] - times[0]
    return {"fps": (len(times) - 1) / span if span > 0 else 0.0, "wall_s": wall, "cpu_s": cpu, "rss_mb": rss, "frames": len(times)}


def _creds() -> dict:
    return {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def predict(model: Path, video: Path, imgsz: int) -> dict:
    yolo = shutil.which("yolo", path=str(Path(sys.executable).parent)) or "yolo"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    wall, cpu, rss, stdout, stderr = run_measured(
        [yolo, "predict", f"model={model}", f"source={video}", "save=False", f"imgsz={imgsz}", "device=cpu"], env
    )
    speed = re.search(r"Speed: ([\d.]+)ms preprocess, ([\d.]+)ms inference, ([\d.]+)ms postprocess", stdout + stderr)
    per_image = sum(float(x) for x in speed.groups())
    return {"fps": 1000.0 / per_image, "wall_s": wall, "cpu_s": cpu, "rss_mb": rss}


def pure_inference(model: Path, images: list, imgsz: int) -> dict:
    from worker import detector as detectors

    det = detectors.load(str(model), imgsz=imgsz, device="cpu")
    det.detect(images[0])
    started, cpu_started = time.perf_counter(), time.process_time()
    for image in images:
        det.detect(image)
    return {"fps": len(images) / (time.perf_counter() - started), "cpu_s": time.process_time() - cpu_started}


def main(frames: int = 150, imgsz: int = 640) -> dict:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import cv2
    from ultralytics import YOLO

    from kinase_cli.workflows.samples import shapes_video

    work = Path(tempfile.mkdtemp(prefix="kinase-bench-"))
    video = work / "bench.mp4"
    shapes_video(video, frames=frames, fps=15, size=(640, 480), seed=21, shapes=3)
    shutil.copy(PT, work / PT.name)
    onnx = Path(YOLO(str(work / PT.name)).export(format="onnx", imgsz=imgsz, opset=17, simplify=True, dynamic=True, verbose=False))
    cap = cv2.VideoCapture(str(video))
    images = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    moto, endpoint = start_moto(work)
    results: dict[str, dict] = {}
    try:
        for fmt, model in (("onnx", onnx), ("pt", work / PT.name)):
            results[f"worker {fmt}"] = worker(model, video, imgsz, endpoint, frames)
            results[f"predict {fmt}"] = predict(model, video, imgsz)
            results[f"inference {fmt}"] = pure_inference(model, images, imgsz)
    finally:
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{frames} frames 640x480, imgsz {imgsz}, CPU threads: {os.cpu_count()}")
    print(f"{'run':<16} {'fps':>7} {'wall s':>8} {'CPU s':>7} {'frames/CPU s':>13} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(
            f"{name:<16} {r['fps']:>7.1f} {r.get('wall_s', float('nan')):>8.1f} {r['cpu_s']:>7.1f} "
            f"{frames / r['cpu_s']:>13.2f} {r.get('rss_mb', float('nan')):>12}"
        )
    print(
        "(fps: steady state, see above; CPU s: the whole process for worker and predict, start-up and model load included; "
        "the inference loop only for inference)"
    )
    ratios = {
        "worker onnx / predict pt": results["worker onnx"]["fps"] / results["predict pt"]["fps"],
        "worker onnx / predict onnx": results["worker onnx"]["fps"] / results["predict onnx"]["fps"],
        "worker pt / predict pt": results["worker pt"]["fps"] / results["predict pt"]["fps"],
        "worker onnx / inference onnx": results["worker onnx"]["fps"] / results["inference onnx"]["fps"],
        "worker pt / inference pt": results["worker pt"]["fps"] / results["inference pt"]["fps"],
    }
    cpu_ratio = results["predict pt"]["cpu_s"] / results["worker onnx"]["cpu_s"]
    for name, value in ratios.items():
        print(f"{name:<30} {value:5.2f}x")
    print(f"{'CPU: predict pt / worker onnx':<30} {cpu_ratio:5.2f}x  (CPU seconds per video, start-up included)")
    print(
        f"targets: worker onnx >= 2x predict pt: {'met' if ratios['worker onnx / predict pt'] >= 2 else 'MISSED'}; "
        f"worker >= 0.9x pure inference: {'met' if min(ratios['worker onnx / inference onnx'], ratios['worker pt / inference pt']) >= 0.9 else 'MISSED'}; "
        f"worker RSS <= 1.5 GB: {'met' if max(results['worker onnx']['rss_mb'], results['worker pt']['rss_mb']) <= 1536 else 'MISSED'}"
    )
    return {"results": results, "ratios": ratios, "cpu_ratio": cpu_ratio}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args()
    main(args.frames, args.imgsz)

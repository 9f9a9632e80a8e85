"""`kinase watch --json --count N` against the hackathon consumer (receive 1, delete 1) (target: >= 3x).

Both drain the same local results queue, filled with N contract-built messages before each run;
runs alternate so machine noise hits both alike. The watch figure is the whole command, start-up
included, timed from the outside; the baseline runs in-process with an already built client, so
the ratio is conservative. moto's SQS slows down as a queue grows: keep N in the low hundreds.

Uses the running local stack (`kinase local up && kinase deploy --local`); without one it starts
its own in a temporary KINASE_HOME and stops it afterwards.
Usage: python -m bench.watch_bench [--messages 300] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 3.0
KINASE = [sys.executable, "-m", "kinase_cli"]


def kinase(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*KINASE, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)


@contextmanager
def local_stack():
    """The outputs of a deployed local stack, and the environment that reaches it."""
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    probe = subprocess.run([*KINASE, "outputs", "--local", "--json"], cwd=ROOT, env=env, capture_output=True, text=True)
    if probe.returncode == 0 and "ResultsQueueUrl" in probe.stdout:
        yield json.loads(probe.stdout)["data"], env
        return
    with tempfile.TemporaryDirectory() as home:
        env["KINASE_HOME"] = os.environ["KINASE_HOME"] = home
        print("starting a local stack for the benchmark (kinase local up + deploy --local) ...", file=sys.stderr)
        try:
            kinase("local", "up", env=env)
            kinase("deploy", "--local", env=env)
            yield json.loads(kinase("outputs", "--local", "--json", env=env).stdout)["data"], env
        finally:
            subprocess.run([*KINASE, "local", "down"], cwd=ROOT, env=env, capture_output=True)


def fill(sqs, queue_url: str, bucket: str, n: int) -> None:
    from worker import contract

    now = time.time()
    bodies = [
        contract.dumps(contract.build(
            bucket=bucket, stream_name="bench", frame_index=i, source={"type": "file", "uri": "bench.mp4", "frame_number": i},
            frame_time=now, width=640, height=480, model="bench", inference_ms=10.0,
            detections=[{"class": "person", "class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.2]}] * (i % 4), now=now,
        ))
        for i in range(n)
    ]
    for start in range(0, n, 10):
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start:start + 10])])


def depth(sqs, queue_url: str) -> int:
    a = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def hackathon_consumer(sqs, queue_url: str, n: int) -> float:
    """The original algorithm: receive one message, parse it, delete it, repeat."""
    start = time.perf_counter()
    done = 0
    while done < n:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
        for m in messages:
            json.loads(m["Body"].replace("'", '"'))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            done += 1
    return time.perf_counter() - start


def kinase_watch(env: dict, n: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*KINASE, "watch", "--local", "--json", "--count", str(n)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    elapsed = time.perf_counter() - start
    lines = proc.stdout.count("\n")
    if lines != n:
        raise SystemExit(f"kinase watch printed {lines} lines, expected {n}:\n{proc.stderr}")
    return elapsed


def main(messages: int = 300, runs: int = 3) -> dict:
    from kinase_cli.target import Target

    with local_stack() as (outputs, env):
        sqs = Target(local=True).client("sqs")
        queue_url, bucket = outputs["ResultsQueueUrl"], outputs["FramesBucketName"]
        if depth(sqs, queue_url):
            raise SystemExit(f"the results queue is not empty ({depth(sqs, queue_url)} messages): drain it first")
        samples: dict[str, list[float]] = {"kinase watch --json": [], "receive 1, delete 1": []}
        for _ in range(runs):
            for name, drain in (("kinase watch --json", lambda: kinase_watch(env, messages)),
                                ("receive 1, delete 1", lambda: hackathon_consumer(sqs, queue_url, messages))):
                fill(sqs, queue_url, bucket, messages)
                samples[name].append(drain())
                if depth(sqs, queue_url):
                    raise SystemExit(f"{name} left {depth(sqs, queue_url)} messages on the queue")
    rates = {name: messages / statistics.median(values) for name, values in samples.items()}
    print(f"{messages} messages per run, {runs} runs each, median")
    print(f"{'consumer':<22} {'median s':>9} {'msgs/s':>8}")
    for name, values in samples.items():
        print(f"{name:<22} {statistics.median(values):>9.2f} {rates[name]:>8.1f}")
    ratio = rates["kinase watch --json"] / rates["receive 1, delete 1"]
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"kinase watch drains {ratio:.1f}x faster than the hackathon consumer; {verdict} the {TARGET_RATIO:.0f}x target")
    return {"rates": rates, "ratio": ratio}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    main(args.messages, args.runs)

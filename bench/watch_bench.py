"""`kinase watch --json --count N` against the hackathon consumer (receive 1, delete 1) (target: >= 3x).

Both drain the same local results queue, filled with N contract-built messages before each run;
runs alternate so machine noise hits both alike. The watch figure is the whole command, start-up
included, timed from the outside; the baseline runs in-process with an already built client, so
the ratio is conservative. moto's SQS slows down as a queue grows: keep N in the low hundreds.

moto does O(queue length) work for every message it hands out (it recomputes all queue
attributes per message), the same for both consumers, so on moto the gap is mostly the saved
round trips and start-up. AWS is a network away: `--rtt-ms` puts a proxy that delays each request
by that much between both consumers and moto, to show the same drain with real round trips.

Uses the running local stack (`kinase local up && kinase deploy --local`); without one it starts
its own in a temporary KINASE_HOME and stops it afterwards.
Usage: python -m bench.watch_bench [--messages 300] [--runs 3] [--rtt-ms 0 20]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
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
    proc = subprocess.run([*KINASE, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"kinase {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            kinase("local", "up", "--port", str(free_port()), "--kvs-port", str(free_port()), env=env)
            kinase("deploy", "--local", env=env)
            yield json.loads(kinase("outputs", "--local", "--json", env=env).stdout)["data"], env
        finally:
            subprocess.run([*KINASE, "local", "down"], cwd=ROOT, env=env, capture_output=True)


class DelayProxy:
    """A forwarding HTTP proxy that adds `rtt_s` to every request, standing in for a network hop."""

    def __init__(self, upstream: str, rtt_s: float):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        target = urlparse(upstream)
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every response

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(rtt_s)
                if getattr(local, "conn", None) is None:
                    local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                    local.conn.connect()
                    local.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                local.conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = local.conn.getresponse()
                payload = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("localhost", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@contextmanager
def reached_through(env: dict, rtt_ms: float):
    """(environment for `kinase`, an SQS client for the baseline), both going through a delay proxy when rtt_ms > 0."""
    import boto3

    home = Path(env.get("KINASE_HOME") or Path.home() / ".kinase")
    state = json.loads((home / "local" / "state.json").read_text())
    proxy = DelayProxy(state["aws_endpoint"], rtt_ms / 1000.0) if rtt_ms > 0 else None
    try:
        with tempfile.TemporaryDirectory() as proxied_home:
            if proxy is not None:
                (Path(proxied_home) / "local").mkdir()
                (Path(proxied_home) / "local" / "state.json").write_text(json.dumps({**state, "aws_endpoint": proxy.url}))
                env = {**env, "KINASE_HOME": proxied_home}
            sqs = boto3.client(
                "sqs",
                endpoint_url=proxy.url if proxy else state["aws_endpoint"],
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            yield env, sqs
    finally:
        if proxy is not None:
            proxy.close()


def fill(sqs, queue_url: str, bucket: str, n: int) -> None:
    from worker import contract

    now = time.time()
    sources = [{"type": "file", "uri": "bench.mp4", "frame_number": i} for i in range(n)]
    bodies = [
        contract.dumps(
            contract.build(
                bucket=bucket,
                stream_name="bench",
                frame_index=i,
                source=sources[i],
                frame_id=contract.frame_id("bench", sources[i]),
                frame_time=now,
                width=640,
                height=480,
                model="bench",
                inference_ms=10.0,
                detections=[{"class": "person", "class_id": 0, "conf": 0.9, "bbox": [0.5, 0.5, 0.1, 0.2]}] * (i % 4),
                now=now,
            )
        )
        for i in range(n)
    ]
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])]
        )


def depth(sqs, queue_url: str) -> int:
    a = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
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
    proc = subprocess.run(
        [*KINASE, "watch", "--local", "--json", "--count", str(n)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    lines = proc.stdout.count("\n")
    if lines != n:
        raise SystemExit(f"kinase watch printed {lines} lines, expected {n}:\n{proc.stderr}")
    return elapsed


def scenario(env: dict, sqs, outputs: dict, messages: int, runs: int) -> dict:
    queue_url, bucket = outputs["ResultsQueueUrl"], outputs["FramesBucketName"]
    if depth(sqs, queue_url):
        raise SystemExit(f"the results queue is not empty ({depth(sqs, queue_url)} messages): drain it first")
    samples: dict[str, list[float]] = {"kinase watch --json": [], "receive 1, delete 1": []}
    for _ in range(runs):
        for name, drain in (
            ("kinase watch --json", lambda: kinase_watch(env, messages)),
            ("receive 1, delete 1", lambda: hackathon_consumer(sqs, queue_url, messages)),
        ):
            fill(sqs, queue_url, bucket, messages)
            samples[name].append(drain())
            if depth(sqs, queue_url):
                raise SystemExit(f"{name} left {depth(sqs, queue_url)} messages on the queue")
    return {name: messages / statistics.median(values) for name, values in samples.items()} | {
        f"{name} s": statistics.median(values) for name, values in samples.items()
    }


def main(messages: int = 300, runs: int = 3, rtts: tuple[float, ...] = (0.0, 20.0)) -> dict:
    results = {}
    with local_stack() as (outputs, env):
        for rtt in rtts:
            with reached_through(env, rtt) as (scenario_env, sqs):
                results[rtt] = scenario(scenario_env, sqs, outputs, messages, runs)
    print(f"{messages} messages per run, {runs} runs each, median; watch timed with its start-up")
    print(f"{'added round trip':<17} {'consumer':<22} {'median s':>9} {'msgs/s':>8}")
    ratios = {}
    for rtt, rates in results.items():
        for name in ("kinase watch --json", "receive 1, delete 1"):
            print(f"{rtt:>14.0f} ms {name:<22} {rates[name + ' s']:>9.2f} {rates[name]:>8.1f}")
        ratios[rtt] = rates["kinase watch --json"] / rates["receive 1, delete 1"]
    for rtt, ratio in ratios.items():
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        print(
            f"+{rtt:.0f} ms round trip: kinase watch drains {ratio:.1f}x faster than the hackathon consumer; "
            f"{verdict} the {TARGET_RATIO:.0f}x target"
        )
    return {"results": results, "ratios": ratios}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 20.0], help="added round trip per request, one scenario each")
    args = parser.parse_args()
    main(args.messages, args.runs, tuple(args.rtt_ms))

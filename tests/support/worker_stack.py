"""What the worker tests run against: the local stack's moto server (S3, SQS) and Kinesis Video endpoint.

`media` wraps conftest's `local_stack` for the test session; every test takes its own bucket, queue and stream
from `media.fresh()`, so tests never see each other's frames. The worker runs either as a real
process (`run_worker`, as the container runs it) or in this process (`Worker`) when a test injects
faults through botocore event hooks on the session it hands over.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3

from support.cli import ROOT
from worker import contract, layout
from worker import settings as worker_settings

MODELS = ROOT / "models"
SHAPES_ONNX = MODELS / "shapes-yolo11n.onnx"
SHAPES_PT = MODELS / "shapes-yolo11n.pt"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class Target:
    """One test's bucket, queue and stream name."""

    bucket: str
    queue_url: str
    stream: str


class Media:
    def __init__(self, aws_endpoint: str, kvs_endpoint: str):
        self.aws_endpoint = aws_endpoint
        self.kvs_endpoint = kvs_endpoint
        self.env = {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": aws_endpoint,
            "AWS_ENDPOINT_URL_KINESIS_VIDEO": self.kvs_endpoint,
            "YOLO_OFFLINE": "1",
        }
        self.session = self.new_session()
        self.s3 = self.client("s3")
        self.sqs = self.client("sqs")
        self.kvs = self.client("kinesisvideo")

    def client(self, service: str):
        endpoint = self.kvs_endpoint if service == "kinesisvideo" else self.aws_endpoint
        return self.session.client(service, endpoint_url=endpoint)

    def new_session(self) -> boto3.session.Session:
        """Credentials for the local stack; with `aws_env` its clients reach it. Tests register fault hooks on its `.events`."""
        return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def fresh(self, with_stream: bool = False) -> Target:
        name = "w" + uuid.uuid4().hex[:10]
        self.s3.create_bucket(Bucket=name)
        queue_url = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        if with_stream:
            self.kvs.create_stream(StreamName=name, DataRetentionInHours=1)
        return Target(name, queue_url, name)

    def worker_env(self, target: Target, source: str, model: Path = SHAPES_ONNX, **settings) -> dict:
        values = dict(
            source=source,
            bucket=target.bucket,
            queue_url=target.queue_url,
            model=model,
            imgsz=320,
            stream_name=target.stream,
            metrics_interval=60,
        )
        return {**os.environ, **self.env, **worker_settings.environment(**{**values, **settings})}

    def put(self, stream: str, video: Path, **options):
        """Feed a file into a stream through PutMedia, as `kinase stream put` does."""
        from kinase_cli.aws.kvs_put import put_file

        target = types.SimpleNamespace(client=self.client, session=self.session, region_name="us-east-1")
        return put_file(target, video, stream, **options)

    def messages(self, queue_url: str, expect: int | None = None, wait: float = 10.0) -> list[dict]:
        """Every message in the queue, parsed and validated against the contract (and deleted)."""
        found: list[dict] = []
        deadline = time.monotonic() + wait
        while True:
            got = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if got:
                found += [contract.parse(m["Body"]) for m in got]
                self.sqs.delete_message_batch(
                    QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
                )
                continue
            if expect is None or len(found) >= expect or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def checkpoint(self, target: Target) -> dict | None:
        try:
            body = self.s3.get_object(Bucket=target.bucket, Key=layout.checkpoint_key(target.stream))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)


def run_worker(env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


SUMMARY_WORDS = "read|processed|delivered|sampled out|dropped|gapped|corrupt media|corrupt|unfinished|released|deduplicated|gaps|fragments|reconnects|retries|resent"
OUTCOMES = ("delivered", "sampled_out", "dropped", "gapped", "corrupt", "unfinished", "released")


def summary(stderr: str) -> dict:
    """The counters of the worker's exit summary line, e.g. {'read': 45, 'dropped': 0, 'sampled_out': 0, ...}."""
    line = next(line for line in reversed(stderr.splitlines()) if "summary:" in line)
    return {k.replace(" ", "_"): int(v) for k, v in re.findall(rf"\b({SUMMARY_WORDS}) (\d+)", line)}


def accounted(counts: dict) -> dict:
    """`counts` after checking the accounting invariant: every frame read ended in exactly one outcome."""
    assert counts["read"] == sum(counts[o] for o in OUTCOMES), counts
    return counts


def frame_ids(messages: list[dict]) -> list[str]:
    """The frame ids of these messages; each must give the S3 key its message names."""
    assert all(m["key"] == layout.frame_key(m["frame_id"]) for m in messages)
    return [m["frame_id"] for m in messages]


def metrics_lines(stdout: str) -> list[dict]:
    """The worker's interval records: EMF lines with the counters (not the further lines of an interval's latencies)."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"_aws"' in line]
    return [r for r in records if "FramesRead" in r]


class Background:
    """A worker process (the one-off `worker`, or `worker.fleet`) that a test watches and signals while it runs."""

    def __init__(self, env: dict, module: str = "worker"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stderr: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._seen:
                self.stderr.append(line)
                self._seen.notify_all()

    def wait_for(self, predicate, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        with self._seen:
            checked = 0
            while True:
                for line in self.stderr[checked:]:
                    if predicate(line):
                        return line
                checked = len(self.stderr)
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("worker never logged the expected line:\n" + "".join(self.stderr))
                self._seen.wait(0.5)

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        stdout = self.proc.stdout.read()
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc, stdout, "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def since(worker: Background, predicate):
    """`predicate` for `Background.wait_for`, seeing only the lines logged from now on."""
    mark, seen = len(worker.stderr), [0]

    def check(line: str) -> bool:
        seen[0] += 1
        return seen[0] > mark and predicate(line)

    return check

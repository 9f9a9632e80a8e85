"""Fixtures of the end-to-end tests: a standalone Kinesis Video endpoint, the watch stack with empty queues."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from support.cli import ROOT, free_port
from support.kvs import MEDIA_IDLE_SECONDS, KvsEndpoint
from support.watch_stack import Stack


@pytest.fixture(scope="module")
def kvs_endpoint(tmp_path_factory):
    home = tmp_path_factory.mktemp("kvs-home")
    port = free_port()
    log = open(home / "kvs_server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kinase_cli.local.kvs_server",
            "--host",
            "localhost",
            "--port",
            str(port),
            "--media-idle-seconds",
            str(MEDIA_IDLE_SECONDS),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((home / "kvs_server.log").read_text()) from None
            time.sleep(0.05)
    (home / "local").mkdir(exist_ok=True)
    (home / "local" / "state.json").write_text(
        json.dumps(
            {
                "aws_endpoint": f"http://localhost:{free_port()}",  # nothing listens: these tests never need moto
                "kinesis_video_endpoint": url,
            }
        )
    )
    yield KvsEndpoint(url=url, home=home)
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="session")
def stack(local_stack, deployed_stack):
    return Stack(outputs=deployed_stack, endpoint=local_stack["aws_endpoint"])


@pytest.fixture
def fresh(stack):
    """The stack with empty queues."""
    stack.reset()
    return stack

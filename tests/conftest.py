"""Shared fixtures. Every test session gets its own KINASE_HOME, so a developer's state is never touched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KINASE = [sys.executable, "-m", "kinase_cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def kinase_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("kinase-home")
    os.environ["KINASE_HOME"] = str(home)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    for var in ("AWS_PROFILE", "KINASE_LOCAL", "KINASE_ENV"):
        os.environ.pop(var, None)
    return home


def kinase(*args: str, env: dict | None = None, timeout: float = 600, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `kinase` command in a subprocess, as an operator would."""
    proc = subprocess.run(
        [*KINASE, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={**os.environ, **(env or {})}, input=input,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kinase {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def local_stack(kinase_home):
    """`kinase local up` on free ports for the whole session; yields its state.json; always `local down`."""
    port, kvs_port = free_port(), free_port()
    try:
        kinase("local", "up", "--port", str(port), "--kvs-port", str(kvs_port), check=True, timeout=300)
        yield json.loads((kinase_home / "local" / "state.json").read_text())
    finally:
        kinase("local", "down", timeout=120)


@pytest.fixture(scope="session")
def deployed_stack(local_stack):
    """`kinase deploy --local` once per session; yields the outputs (ResultsQueueUrl, FramesBucketName, ...)."""
    kinase("deploy", "--local", check=True, timeout=600)
    return json.loads(kinase("outputs", "--local", "--json", check=True).stdout)["data"]


def one_error_line(proc: subprocess.CompletedProcess, *, only: bool = False) -> str:
    """The `error: ...` line of a failed command: exactly one, no traceback; `only`: stderr holds nothing else."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    if only:
        lines = proc.stderr.strip().splitlines()
    else:
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    line = one_error_line(proc, only=True)
    for fragment in fragments:
        assert fragment in line, line

"""Running the real `kinase` command as an operator would, and reading its one-line errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINASE = [sys.executable, "-m", "kinase_cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kinase(
    *args: str, env: dict | None = None, timeout: float = 600, check: bool = False, input: str | None = None
) -> subprocess.CompletedProcess:
    """Run the real `kinase` command in a subprocess, as an operator would."""
    proc = subprocess.run(
        [*KINASE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        input=input,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kinase {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


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

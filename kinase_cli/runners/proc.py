"""The one subprocess runner: cdk, docker, the local servers and the local worker all go through it."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kinase_cli.ui.errors import KinaseError


@dataclass
class Result:
    returncode: int
    output: str


def which(program: str, hint: str) -> str:
    path = program if os.sep in program else shutil.which(program)
    if not path or not os.path.exists(path):
        raise KinaseError(f"`{program}` was not found", hint)
    return path


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = True,
    what: str | None = None,
    hint: str | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> Result:
    """Run a command, streaming each output line to `on_line`; stdout and stderr are merged.

    With `check`, a non-zero exit raises a KinaseError naming the command and quoting its last
    output lines. `input` goes to stdin (used for secrets that must never appear in argv).
    """
    what = what or Path(argv[0]).name
    try:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
    except FileNotFoundError:
        raise KinaseError(f"`{argv[0]}` was not found", hint) from None
    if on_start:
        on_start(proc)
    if input is not None:
        proc.stdin.write(input)
        proc.stdin.close()
    lines: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=8)
    for line in proc.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        tail.append(line)
        if on_line:
            on_line(line)
    code = proc.wait()
    if check and code != 0:
        last = " | ".join(s.strip() for s in tail if s.strip())[-600:]
        raise KinaseError(f"{what} failed (exit {code}): {last}", hint, exit_code=code or 1)
    return Result(code, "\n".join(lines))


def start_background(
    argv: Sequence[str], *, log_file: Path, env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> subprocess.Popen:
    """Start a long-lived process detached from this one, its output appended to `log_file`."""
    log = open(log_file, "ab")
    try:
        return subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()

"""Local worker runs (the local stack's stand-in for Fargate tasks): a log file and a record per run.

`run-task --local` writes them, `logs --local` reads the logs and `status --local` the records, the way
CloudWatch Logs and DescribeTasks serve the same commands on AWS. Each log line is stored as
`<ISO time> <line>` so that `--since` works like it does on CloudWatch.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from kinase_cli import paths
from kinase_cli.runners import proc
from kinase_cli.ui import console
from worker.contract import iso


def runs_dir() -> Path:
    path = paths.local_dir() / "worker-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_task_id() -> str:
    return uuid.uuid4().hex


def log_file(task_id: str) -> Path:
    return runs_dir() / f"{task_id}.log"


def record_file(task_id: str) -> Path:
    return runs_dir() / f"{task_id}.json"


def _write_record(task_id: str, record: dict) -> None:
    tmp = record_file(task_id).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, sort_keys=True))
    tmp.replace(record_file(task_id))


def run(
    argv: Sequence[str], *, task_id: str, env: dict[str, str], cwd: Path, settings: dict[str, str], on_line: Callable[[str], None]
) -> int:
    """Run the worker in the foreground; every output line is logged and passed to `on_line`."""
    record = {"taskId": task_id, "pid": os.getpid(), "startedAt": iso(time.time()), "lastStatus": "RUNNING", "settings": settings}
    _write_record(task_id, record)
    with open(log_file(task_id), "a", encoding="utf-8") as log:

        def line(text: str) -> None:
            log.write(f"{iso(time.time())} {text}\n")
            log.flush()
            on_line(text)

        forward = _Forward()
        previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
        try:
            code = proc.run(argv, env=env, cwd=cwd, on_line=line, check=False, what="worker", on_start=forward.started).returncode
        except KeyboardInterrupt:
            code = 130
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    record.update(lastStatus="STOPPED", stoppedAt=iso(time.time()), exitCode=code)
    _write_record(task_id, record)
    return code


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Forward:
    """Ctrl-C, SIGTERM and SIGHUP to kinase reach the worker as SIGTERM (as ECS stops a task): it
    stops reading, flushes, checkpoints and exits, and its last lines and exit code are still shown
    and passed on. A second Ctrl-C stops waiting for it."""

    def __init__(self):
        self.worker = None
        self.seen = False

    def started(self, worker) -> None:
        self.worker = worker

    def __call__(self, signum, frame) -> None:
        if self.seen and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
        if not self.seen:
            console.warn(f"{signal.Signals(signum).name}: stopping the worker (it flushes and checkpoints); Ctrl-C again to stop waiting")
        self.seen = True


def records() -> list[dict]:
    """Every local run, newest first; a run whose kinase process died is reported as STOPPED."""
    found = []
    for path in runs_dir().glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("lastStatus") == "RUNNING" and not _alive(record.get("pid", 0)):
            record.update(lastStatus="STOPPED", stoppedReason="the kinase process that ran it is gone")
        found.append(record)
    return sorted(found, key=lambda r: r.get("startedAt", ""), reverse=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def parse_line(text: str) -> tuple[str, str]:
    """(`ISO time`, message) of one stored log line."""
    stamp, _, message = text.rstrip("\n").partition(" ")
    return stamp, message


def read_log(task_id: str, since_iso: str = "", offset: int = 0) -> tuple[Iterator[tuple[str, str]], int]:
    """Events of one run at or after `since_iso`, starting at byte `offset`; and the offset reached."""
    path = log_file(task_id)
    if not path.exists():
        return iter(()), offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    complete = data[: data.rfind(b"\n") + 1]
    events = [parse_line(raw) for raw in complete.decode("utf-8", "replace").splitlines()]
    return iter([e for e in events if e[0] >= since_iso]), offset + len(complete)


def task_ids() -> list[str]:
    return sorted((p.stem for p in runs_dir().glob("*.log")), key=lambda t: log_file(t).stat().st_mtime)


class Tail:
    """New lines of local worker runs' log files (all runs, or the given task ids), as events shaped like
    aws/log_tail.CloudWatchTail's, so `logs --local` reads them the way `logs` reads CloudWatch."""

    def __init__(self, since: datetime, task_ids: list[str] | None = None):
        self.since = iso(since)
        self.task_ids = task_ids
        self.offsets: dict[str, int] = {}

    def poll(self) -> list[dict]:
        events = []
        for task_id in self.task_ids or task_ids():
            lines, self.offsets[task_id] = read_log(task_id, self.since, self.offsets.get(task_id, 0))
            stream = str(log_file(task_id))
            events += [{"timestamp": ts, "task": task_id, "stream": stream, "message": msg} for ts, msg in lines]
        return sorted(events, key=lambda e: e["timestamp"])

"""The local stack recovers: `local down && local up` at once, and `local up` after a server died.

Each test runs its own stack in its own KINASE_HOME (the session's stack is not touched).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.cli import free_port, kinase

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/cmdline").read_bytes() != b""


def _kill(send, *pids: int) -> None:
    """SIGKILL each process with `send` (os.kill, or os.killpg for its group) and wait until none is alive."""
    for pid in pids:
        send(pid, signal.SIGKILL)
    for _ in range(100):
        if not any(_alive(pid) for pid in pids):
            return
        time.sleep(0.1)


@contextmanager
def _own_stack(home: Path, port: int | None = None):
    """`kinase local up` in its own KINASE_HOME on free ports, `local down` after; (its env, the port flags)."""
    env = {"KINASE_HOME": str(home)}
    args = ("--port", str(port or free_port()), "--kvs-port", str(free_port()))
    try:
        kinase("local", "up", *args, env=env, check=True, timeout=300)
        yield env, args
    finally:
        kinase("local", "down", env=env, timeout=120)


def _state(home: Path) -> dict:
    return json.loads((home / "local" / "state.json").read_text())


def _time_wait_on(port: int) -> int:
    """Sockets in TIME_WAIT whose local port is `port` (from /proc/net/tcp*: state 06)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "06" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def test_down_and_up_back_to_back_while_old_sockets_are_in_time_wait(tmp_path):
    port = free_port()
    with _own_stack(tmp_path, port) as (home, args):
        for _ in range(5):  # the server closes these connections first: its side ends in TIME_WAIT
            request = urllib.request.Request(f"http://localhost:{port}/moto-api/", headers={"Connection": "close"})
            urllib.request.urlopen(request, timeout=30).read()
        down = json.loads(kinase("local", "down", "--json", env=home, check=True).stdout)
        assert [s.split()[0] for s in down["data"]["stopped"]] == ["moto", "kvs"]
        assert _time_wait_on(port) > 0  # the condition that made `local up` fail for a minute before
        up = kinase("local", "up", "--json", *args, env=home, timeout=300)
        assert up.returncode == 0, up.stderr
        report = json.loads(up.stdout)["data"]
        assert report["started"] == ["moto", "kvs"] and report["aws_endpoint"] == f"http://localhost:{port}"


def test_a_dead_server_is_restarted_alone_and_what_was_deployed_is_deployed_again(tmp_path):
    with _own_stack(tmp_path) as (home, args):
        kinase("deploy", "--local", env=home, check=True, timeout=600)
        before = _state(tmp_path)
        _kill(os.kill, before["moto"]["pid"])

        up = kinase("local", "up", "--json", *args, env=home, timeout=900)

        assert up.returncode == 0, up.stderr
        report = json.loads(up.stdout)["data"]
        assert report["started"] == ["moto"] and report["redeployed"] == ["dev"]
        assert "came back empty: redeploying dev" in up.stderr
        after = _state(tmp_path)
        assert after["kvs"]["pid"] == before["kvs"]["pid"] and _alive(after["kvs"]["pid"])
        assert after["moto"]["port"] == before["moto"]["port"] and after["moto"]["pid"] != before["moto"]["pid"]
        outputs = json.loads(kinase("outputs", "--local", "--json", env=home, check=True).stdout)["data"]
        stream = kinase("stream", "ls", "--local", "--json", env=home, check=True).stdout
        assert outputs["StreamName"] in stream
        status = json.loads(kinase("status", "--local", "--json", env=home, check=True).stdout)["data"]
        assert status["queue"]["url"] == outputs["ResultsQueueUrl"]

        # The Kinesis Video endpoint dies now; --no-redeploy says in one line what to run instead.
        _kill(os.kill, after["kvs"]["pid"])
        skipped = kinase("local", "up", "--json", "--no-redeploy", *args, env=home, timeout=300)
        assert skipped.returncode == 0, skipped.stderr
        report = json.loads(skipped.stdout)["data"]
        assert report["started"] == ["kvs"] and report["redeployed"] == [] and report["not_redeployed"] == ["dev"]
        warnings = [line for line in skipped.stderr.splitlines() if "came back empty" in line]
        assert len(warnings) == 1 and "kinase deploy --local" in warnings[0]
        assert _state(tmp_path)["moto"]["pid"] == after["moto"]["pid"]


def test_up_when_nothing_runs_but_a_stale_record_remains(tmp_path):
    """A record of servers that are gone (a reboot): a fresh start, nothing deployed to redo."""
    with _own_stack(tmp_path) as (home, args):
        state = _state(tmp_path)
        _kill(os.killpg, state["moto"]["pid"], state["kvs"]["pid"])
        up = kinase("local", "up", "--json", *args, env=home, timeout=300)
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["data"]["started"] == ["moto", "kvs"]

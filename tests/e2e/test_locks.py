"""One command at a time changes a local fleet or the local stack; damaged state files are rebuilt from what runs.

Two `fleet up --local` at once used to leave four workers of which two were recorded; a truncated
state file made `local status` say "not running" while both servers ran, and `local down` left them
up. The fleet tests run on the session's stack (default environment, its fleet stopped after each
test); the local stack's own state is damaged in a second stack of the test's own KINASE_HOME, so
the session's stack is never at risk.
"""

from __future__ import annotations

import json
import os
import subprocess

import click
import pytest

from kinase_cli.local import lock
from kinase_cli.local.stack import cmdline
from support.cli import KINASE, ROOT, assert_one_line_error, free_port, kinase
from support.json_contract import envelope
from support.poll import until
from support.worker_stack import SHAPES_ONNX

pytestmark = pytest.mark.e2e

UP = ("fleet", "up", "--local", "--workers", "2", "--model", str(SHAPES_ONNX), "-e", "KINASE_IMGSZ=320", "-e", "KINASE_METRICS_INTERVAL=60")


def run_json(*args: str, command: str, env: dict | None = None, timeout: float = 300) -> tuple[dict, str]:
    proc = kinase(*args, "--json", env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return envelope(proc.stdout, command), proc.stderr


def gone(pids, timeout: float = 120) -> bool:
    return until(lambda: not any(cmdline(pid) for pid in pids), f"processes {pids} gone", timeout=timeout, every=0.2)


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture
def fleet_stopped(deployed_stack):
    yield
    kinase("fleet", "down", "--local", timeout=180)


def test_two_fleet_ups_at_once_make_one_fleet_all_recorded(fleet_stopped, kinase_home):
    runs = [
        subprocess.Popen(
            [*KINASE, *UP, "--json"], cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(run.returncode, *outputs) for run, outputs in [(run, run.communicate(timeout=300)) for run in runs]]
    succeeded = [envelope(out, "fleet up") for rc, out, _ in results if rc == 0]
    refused = [err for rc, _, err in results if rc != 0]
    assert len(succeeded) == 1 and len(refused) == 1, results
    # the second either waited for the first and found its fleet, or gave up waiting for the lock
    assert "the local fleet of dev runs already (2 workers)" in refused[0] or "is changing environment dev's fleet" in refused[0]
    assert "Traceback" not in refused[0]
    started = {w["pid"] for w in succeeded[0]["workers"]}
    assert len(started) == 2 and all(cmdline(pid) for pid in started)
    recorded = json.loads((kinase_home / "local" / "fleet-dev.json").read_text())["workers"]
    assert {w["pid"] for w in recorded} == started
    state, _ = run_json("fleet", "status", "--local", command="fleet status")
    assert {w["pid"] for w in state["workers"] if "pid" in w} == started and all(w.get("listed", True) for w in state["workers"])
    down, _ = run_json("fleet", "down", "--local", command="fleet down")
    assert {s["pid"] for s in down["stopped"]} == started and not any(s["killed"] for s in down["stopped"])
    assert gone(started)


def test_a_command_waits_for_the_lock_then_refuses_naming_its_holder(deployed_stack):
    """The refusal names the command holding the lock and its pid (here this test process, as `kinase fleet up`)."""
    with click.Context(click.Command("up"), info_name="kinase fleet up"), lock.exclusive(lock.fleet("dev"), "environment dev's fleet"):
        proc = kinase(*UP, timeout=300)
    assert_one_line_error(proc, f"another `kinase fleet up` is changing environment dev's fleet (pid {os.getpid()})")
    state, _ = run_json("fleet", "status", "--local", command="fleet status")
    assert state["workers"] == [], "the refused command started nothing"


def test_a_damaged_fleet_state_file_is_reported_and_rebuilt_from_the_running_workers(fleet_stopped, kinase_home):
    up, _ = run_json(*UP, command="fleet up")
    started = {w["pid"] for w in up["workers"]}
    path = kinase_home / "local" / "fleet-dev.json"
    path.write_text(path.read_text()[:40])  # cut short, as by a full disk
    state, stderr = run_json("fleet", "status", "--local", command="fleet status")
    (warning,) = warnings(stderr)
    assert str(path) in warning and "damaged" in warning, stderr
    assert {w["pid"] for w in state["workers"] if "pid" in w} == started
    assert not [w for w in state["workers"] if w.get("listed") is False], "every running worker listed, none '(not listed)'"
    path.write_text("{")
    down, stderr = run_json("fleet", "down", "--local", command="fleet down")
    assert len(warnings(stderr)) == 1
    assert {s["pid"] for s in down["stopped"]} == started
    assert gone(started)


def test_a_damaged_local_state_file_is_reported_status_tells_the_truth_and_down_stops_the_servers(tmp_path):
    env = {"KINASE_HOME": str(tmp_path / "home")}
    port, kvs_port = free_port(), free_port()
    try:
        kinase("local", "up", "--port", str(port), "--kvs-port", str(kvs_port), env=env, check=True, timeout=600)
        path = tmp_path / "home" / "local" / "state.json"
        recorded = json.loads(path.read_text())
        pids = {recorded[name]["pid"] for name in ("moto", "kvs")}
        path.write_text(path.read_text()[:30])
        status, stderr = run_json("local", "status", env=env, command="local status")
        (warning,) = warnings(stderr)
        assert str(path) in warning and "damaged" in warning, stderr
        assert status["running"] is True
        assert {name: s["pid"] for name, s in status["servers"].items()} == {n: recorded[n]["pid"] for n in ("moto", "kvs")}
        assert (status["aws_endpoint"], status["kinesis_video_endpoint"]) == (recorded["aws_endpoint"], recorded["kinesis_video_endpoint"])
        path.write_text("")
        down, stderr = run_json("local", "down", env=env, command="local down")
        assert len(warnings(stderr)) == 1 and len(down["stopped"]) == 2
        assert gone(pids)
        status, _ = run_json("local", "status", env=env, command="local status")
        assert status["running"] is False and status["servers"] == {}
    finally:
        kinase("local", "down", env=env, timeout=120)

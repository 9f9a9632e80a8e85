"""`kinase demo` end to end: a fresh KINASE_HOME, so it starts, uses and stops its own local stack."""

from __future__ import annotations

import copy
import io
import re
import socket
from collections import Counter

import pytest
from rich.console import Console

from kinase_cli.commands import demo as demo_command
from kinase_cli.ui import console
from kinase_cli.workflows.event_samples import events_video
from support import json_contract
from support.cli import free_port, kinase, one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FRAMES, FPS = 75, 5  # 15 s: every event type of the events video, the least frames (the demo streams in real time)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("localhost", port)) != 0


class Demo:
    """`kinase demo` in a fresh KINASE_HOME, its local stack on free ports."""

    def __init__(self, home):
        self.home, self.port, self.kvs_port = home, free_port(), free_port()

    def run(self, *args: str, env: dict | None = None, timeout: float):
        ports = ("--port", str(self.port), "--kvs-port", str(self.kvs_port))
        return kinase("demo", *args, *ports, env={"KINASE_HOME": str(self.home), **(env or {})}, timeout=timeout)

    def assert_nothing_left_running(self) -> None:
        assert not (self.home / "local" / "state.json").exists()
        assert port_is_free(self.port) and port_is_free(self.kvs_port)


@pytest.fixture
def demo(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return Demo(home)


def printed(data: dict) -> str:
    """The summary table the demo prints without --json, for this run's data."""
    shown = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(console, "out", Console(file=shown, width=200))
        demo_command._report(data, json_=False)
    return shown.getvalue()


def row(table: str, name: str) -> str:
    found = re.search(rf"^│ {name} +│ (.*?) *│$", table, re.M)
    assert found, (name, table)
    return found.group(1)


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """The demo's video made again, apart from the demo: its shapes in every frame and its events."""
    path = tmp_path_factory.mktemp("truth") / "demo.mp4"
    return events_video(path, fps=FPS, duration=FRAMES / FPS, size=demo_command.VIDEO_SIZE, seed=demo_command.SEED, gop=FPS)


def test_demo_runs_the_whole_pipeline_and_matches_the_ground_truth(demo, tmp_path, truth):
    out = tmp_path / "demo-out"
    proc = demo.run("--frames", str(FRAMES), "--fps", str(FPS), "--save", str(out), "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for step in range(1, 8):
        assert f"[{step}/7]" in proc.stderr
    assert len(proc.stderr.splitlines()) <= 40, proc.stderr  # without a terminal the progress fits on one screen
    data = json_contract.envelope(proc.stdout, "demo")

    assert data["put"]["frames"] == FRAMES and data["put"]["persisted"] == data["put"]["fragments"] > 1
    assert data["worker_exit_code"] == 0
    assert data["watch"]["frames"] == FRAMES and data["watch"]["invalid"] == 0
    assert data["watch"]["saved"] == FRAMES
    accuracy = data["accuracy"]
    assert accuracy["truth_objects"] == sum(len(shapes) for shapes in truth.frames)
    assert accuracy["recall"] >= 0.9 and accuracy["precision"] >= 0.9
    assert set(accuracy["per_class"]) == {shape["class"] for shapes in truth.frames for shape in shapes}
    for cls, counts in accuracy["per_class"].items():
        assert abs(data["watch"]["classes"].get(cls, 0) - counts["truth"]) <= 0.1 * counts["truth"], cls

    # the events the worker published count exactly what the video shows: crossings both ways, a dwell, two visits
    lines, zones = truth.counts["lines"]["door"], truth.counts["zones"]["bay"]
    assert lines["in"] and lines["out"] and zones["dwell"] and sum(zones["entered"].values()) == 2
    events = data["events"]
    assert events["truth"] == truth.counts
    assert events["streams"] == {data["stream"]: truth.counts} and events["exact"] is True
    assert events["types"] == dict(sorted(Counter(e["type"] for e in truth.events).items()))
    assert events["invalid"] == 0
    # ... and the summary says so, per line direction and zone event, by class
    table = printed(data)
    for name, per_class in [*(("line door " + d, c) for d, c in lines.items()), *(("zone bay " + k, c) for k, c in zones.items())]:
        assert row(table, name) == "  ".join(f"{cls}×{n}" for cls, n in per_class.items()) + "  exact"
    assert row(table, "events") == "  ".join(f"{t}×{n}" for t, n in events["types"].items())
    miscounted = copy.deepcopy(data)
    cls = next(iter(lines["in"]))
    miscounted["events"]["streams"][data["stream"]]["lines"]["door"]["in"][cls] += 1
    assert row(printed(miscounted), "line door in").endswith(f"off {cls} +1")

    assert len(list((out / "frames").rglob("*.jpg"))) == FRAMES
    import cv2

    sheet = cv2.imread(data["contact_sheet"])
    assert sheet is not None and sheet.shape == (480, 960, 3)
    assert data["report"] == str(out / "report.html")
    report = (out / "report.html").read_text()
    assert "data:image/jpeg;base64," in report and "<svg" in report and "<th>recall</th>" in report
    assert re.search(r"^web view: http://127\.0\.0\.1:\d+/$", proc.stderr, re.M), proc.stderr[-3000:]

    demo.assert_nothing_left_running()


def test_demo_names_the_step_that_breaks_and_leaves_nothing_running(demo):
    proc = demo.run(env={"KINASE_CDK": str(demo.home / "no-such-cdk")}, timeout=300)
    error = one_error_line(proc)
    assert "demo step 1" in error and "cdk CLI was not found" in error, proc.stderr
    demo.assert_nothing_left_running()


def test_demo_stops_as_soon_as_the_worker_fails_and_says_so(demo):
    proc = demo.run("--frames", "15", env={"KINASE_CONF": "not-a-number"}, timeout=600)
    error = one_error_line(proc)
    assert "the worker exited with code 2" in error and "worker.log" in error, proc.stderr
    assert "idle for" not in proc.stderr
    demo.assert_nothing_left_running()

"""`kinase fleet roll`: the running fleet moves to its task family's newest revision without a gap.

On the local stack: two streams are put in real time, a fleet of two workers reads them, and the
fleet is rolled to a new revision (an extra environment variable) while the video goes on. Every
frame of every stream is delivered exactly once, no worker reports a gap and every worker's
accounting adds up, and the new workers run the new revision. On AWS (moto's ECS) the roll is an
UpdateService with the newest revision on the service that is up. The environment is the module's
own (`--env rolle2e`), so its streams and queue hold nothing from other tests.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import pytest

from infra import naming
from kinase_cli.aws import taskdef
from kinase_cli.local.stack import environ
from kinase_cli.workflows.samples import shapes_video
from support.cli import kinase
from support.json_contract import envelope
from support.ops import aws_env
from support.worker_stack import SHAPES_ONNX, accounted, frame_ids, summary

pytestmark = pytest.mark.e2e

ENV = "rolle2e"
LOCAL = ("--local", "--env", ENV)
FPS = GOP = 5  # one fragment a second, put in real time
SETTINGS = ("-e", "KINASE_LEASE_DURATION=6", "-e", "KINASE_IMGSZ=320", "-e", "KINASE_START=EARLIEST", "-e", "KINASE_METRICS_INTERVAL=60")
MARK = {"name": "ROLL_TEST_MARK", "value": "2"}  # what tells the new revision's workers from the old ones


def run_json(*args: str, command: str, env: dict | None = None, timeout: float = 600) -> dict:
    proc = kinase(*args, "--json", env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return envelope(proc.stdout, command)


@pytest.fixture(scope="module")
def roll_env(local_stack):
    kinase("deploy", *LOCAL, check=True, timeout=900)
    kinase("push-image", *LOCAL, "--source-tree", check=True)  # the local stack's push: the fleet runs the source tree
    outputs = json.loads(kinase("outputs", *LOCAL, "--json", check=True).stdout)["data"]
    yield outputs
    kinase("fleet", "down", *LOCAL, timeout=180)


def new_revision(ecs) -> str:
    """A new revision of the fleet family: the newest one plus an environment variable."""
    current = ecs.describe_task_definition(taskDefinition=naming.fleet_family(ENV))["taskDefinition"]
    request = {k: current[k] for k in taskdef.REGISTER_KEYS if current.get(k) not in (None, [], {})}
    request["containerDefinitions"] = [
        {**c, "environment": [e for e in c.get("environment", []) if e["name"] != MARK["name"]] + [MARK]}
        for c in current["containerDefinitions"]
    ]
    return ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]


def summaries(log: str) -> list[dict]:
    return [accounted(summary(line)) for line in log.splitlines() if "summary:" in line]


def test_a_fleet_rolled_while_video_is_put_delivers_every_frame_once_without_a_gap(roll_env, media, tmp_path):
    queue, streams = roll_env["ResultsQueueUrl"], [roll_env["StreamName"]]
    streams.append(run_json("stream", "create", "cam1", *LOCAL, command="stream create")["name"])
    clip = tmp_path / "clip.mp4"
    shapes_video(clip, frames=20, fps=FPS, size=(320, 240), gop=GOP, seed=7)

    up = run_json("fleet", "up", "--workers", "2", "--model", str(SHAPES_ONNX), *SETTINGS, *LOCAL, command="fleet up")
    old = up["workers"]
    assert len({w["task_definition"] for w in old}) == 1

    stop, puts, errors = threading.Event(), {}, []

    def put(stream: str) -> None:
        try:
            puts[stream] = media.put(stream, clip, loops=1000, realtime=True, stop=stop)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(s,)) for s in streams]
    for thread in threads:
        thread.start()
    messages: list[dict] = []

    def receive(at_least: int) -> None:
        got = media.messages(queue, expect=at_least, wait=300)
        assert got and not errors, (errors, "no message within 300 s")
        messages.extend(got)

    try:
        while {m["stream_name"] for m in messages} != set(streams):  # both streams read by the old workers
            receive(1)
        revision = new_revision(media.client("ecs"))
        rolled = run_json("fleet", "roll", *LOCAL, command="fleet roll")
        assert rolled["rolled"] is True and rolled["task_definition"] == revision and rolled["untaken"] == []
        assert rolled["previous_task_definitions"] == [old[0]["task_definition"]]
        assert not any(s["killed"] for s in rolled["stopped"]) and {s["pid"] for s in rolled["stopped"]} == {w["pid"] for w in old}
        new = rolled["workers"]
        assert len(new) == 2 and all(w["task_definition"] == revision for w in new)
        assert all(environ(w["pid"]).get(MARK["name"]) == MARK["value"] for w in new), "the new workers run the new revision"
        after = len(messages)
        while len(messages) < after + 4 * FPS:  # the new workers deliver what is put after the roll
            receive(after + 4 * FPS - len(messages))
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    put_frames = {s: puts[s].remux.frames for s in streams}
    total = sum(put_frames.values())
    messages += media.messages(queue, expect=total - len(messages), wait=300)

    state = run_json("fleet", "status", *LOCAL, command="fleet status")
    assert {w["worker_id"] for w in state["workers"]} == {w["worker_id"] for w in new}
    assert {s["owner"] for s in state["streams"] if s["name"] in streams} <= {w["worker_id"] for w in new}
    shown = kinase("fleet", "status", *LOCAL, check=True).stdout
    assert revision.rsplit("/", 1)[-1] in shown and old[0]["task_definition"].rsplit("/", 1)[-1] not in shown, shown
    assert run_json("fleet", "roll", *LOCAL, command="fleet roll")["rolled"] is False, "already on the newest revision"
    run_json("fleet", "down", *LOCAL, command="fleet down")
    accounting = {}
    for worker in old + new:  # each worker's accounting of each stream it read: adds up, no gap
        log = Path(worker["log"]).read_text(errors="replace")
        accounting[worker["worker_id"]] = counts = summaries(log)
        assert all(c["gaps"] == 0 for c in counts), log[-3000:]
    # A worker may hold nothing (one that asked for a hand-over when the roll stopped it prints no stream's
    # summary), but both streams were read before the roll and both after it (untaken == []).
    for generation in (old, new):
        assert sum(len(accounting[w["worker_id"]]) for w in generation) >= len(streams), accounting
    ids = frame_ids(messages)
    assert len(ids) == len(set(ids)) == total, (Counter(ids).most_common(3), put_frames, accounting)
    assert Counter(m["stream_name"] for m in messages) == put_frames, accounting
    old_logs = "".join(Path(w["log"]).read_text(errors="replace") for w in old)
    assert all(f"released {s}" in old_logs for s in streams), "the old workers released their leases on SIGTERM"


def test_roll_on_aws_updates_the_service_that_is_up_to_the_newest_revision(roll_env, media):
    env, ecs = aws_env(), media.client("ecs")
    cluster, service = roll_env["ClusterName"], roll_env["FleetServiceName"]
    try:
        run_json("fleet", "up", "--workers", "2", "--env", ENV, env=env, command="fleet up")
        revision = new_revision(ecs)
        rolled = run_json("fleet", "roll", "--env", ENV, env=env, command="fleet roll")
        assert (rolled["rolled"], rolled["service"], rolled["task_definition"]) == (True, service, revision)
        (described,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
        assert (described["taskDefinition"], described["desiredCount"]) == (revision, 2)
        again = run_json("fleet", "roll", "--env", ENV, env=env, command="fleet roll")
        assert again["rolled"] is False and again["previous_task_definition"] == revision
    finally:
        run_json("fleet", "down", "--env", ENV, env=env, command="fleet down")

"""`kinase logs` and `kinase status` against the deployed local stack, human and --json.

CloudWatch Logs events are put into the worker's log group the way the awslogs driver names its
streams (`prefix/container/task id`); the local worker's logs come from real `run-task --local` runs.
"""

from __future__ import annotations

import json
import time

import pytest

from support.cli import kinase, one_error_line
from support.ops import aws_env, drain, local, put_image

pytestmark = pytest.mark.e2e

TASK_A = "0a" * 16
TASK_B = "0b" * 16


@pytest.fixture(scope="module")
def worker_logs(deployed_stack):
    logs = local().client("logs")
    group = deployed_stack["LogGroupName"]
    now = int(time.time() * 1000)
    for task, lines in ((TASK_A, ["a: starting", "a: 12 frames"]), (TASK_B, ["b: starting"])):
        stream = f"worker/{deployed_stack['ContainerName']}/{task}"
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now - 1000 + i, "message": m} for i, m in enumerate(lines)]
        )
    old = f"worker/{deployed_stack['ContainerName']}/{'0c' * 16}"
    logs.create_log_stream(logGroupName=group, logStreamName=old)
    logs.put_log_events(logGroupName=group, logStreamName=old, logEvents=[{"timestamp": now - 3 * 3600 * 1000, "message": "c: long ago"}])
    return group


def test_logs_shows_every_task_since_the_window(worker_logs):
    proc = kinase("logs", env=aws_env())
    assert proc.returncode == 0, proc.stderr
    assert "a: starting" in proc.stdout and "a: 12 frames" in proc.stdout and "b: starting" in proc.stdout
    assert "long ago" not in proc.stdout
    assert kinase("logs", "--since", "4h", env=aws_env()).stdout.count("long ago") == 1


def test_logs_for_one_task_as_json_lines(worker_logs, deployed_stack):
    proc = kinase("logs", "--task", TASK_A, "--json", env=aws_env())
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["message"] for e in events] == ["a: starting", "a: 12 frames"]
    assert {e["task"] for e in events} == {TASK_A}
    assert {e["stream"] for e in events} == {f"worker/{deployed_stack['ContainerName']}/{TASK_A}"}
    assert all(e["timestamp"].endswith("Z") for e in events)


def test_logs_bad_since_is_one_line(deployed_stack):
    assert "cannot read --since 'yesterday'" in one_error_line(kinase("logs", "--since", "yesterday", env=aws_env()))


def test_local_logs_of_a_local_worker_run(deployed_stack, tmp_path):
    run = kinase("run-task", "--local", "--source", str(tmp_path / "missing.mp4"), "--model", "yolo11n.yaml", "--json")
    assert run.returncode == 2
    task_id = json.loads(run.stdout)["data"]["tasks"][0]["task_id"]
    proc = kinase("logs", "--local", "--task", task_id)
    assert proc.returncode == 0, proc.stderr
    assert "no such file" in proc.stdout
    lines = [json.loads(line) for line in kinase("logs", "--local", "--json").stdout.splitlines()]
    assert any(e["task"] == task_id and "no such file" in e["message"] for e in lines)
    assert "no local worker run" in one_error_line(kinase("logs", "--local", "--task", "f" * 32))


def test_status_json_has_every_part(deployed_stack):
    digest = put_image(deployed_stack, "status", "status-view")
    dlq = deployed_stack["DeadLetterQueueUrl"]
    sqs = local().client("sqs")
    drain(dlq)
    sqs.send_message(QueueUrl=dlq, MessageBody="not a frame")
    proc = kinase("status", "--local", "--json")
    assert proc.returncode == 0, proc.stderr
    envelope = json.loads(proc.stdout)
    assert envelope["kinase"] == 1 and envelope["command"] == "status"
    data = envelope["data"]
    assert [s["name"] for s in data["stacks"]] == [f"kinase-dev-{c}" for c in ("network", "storage", "stream", "registry", "compute")]
    assert all(s["status"].endswith("_COMPLETE") for s in data["stacks"])
    assert data["image"]["repository"] == deployed_stack["RepositoryUri"]
    assert data["image"]["latest"]["digest"] == digest and "status" in data["image"]["latest"]["tags"]
    assert data["stream"] == {**data["stream"], "name": deployed_stack["StreamName"], "status": "ACTIVE", "retention_hours": 24}
    assert data["queue"]["url"] == deployed_stack["ResultsQueueUrl"]
    assert data["dead_letter_queue"]["visible"] == 1
    assert data["cost"]["estimate"] is True
    assert data["gpu"] is None  # deployed without --gpu: no GPU capacity provider to report on


def test_status_lists_local_runs_with_exit_codes(deployed_stack, tmp_path):
    run = kinase("run-task", "--local", "--source", str(tmp_path / "gone.mp4"), "--model", "yolo11n.yaml", "--json")
    task_id = json.loads(run.stdout)["data"]["tasks"][0]["task_id"]
    tasks = json.loads(kinase("status", "--local", "--json").stdout)["data"]["tasks"]
    mine = next(t for t in tasks if t["task_id"] == task_id)
    assert (mine["last_status"], mine["exit_code"]) == ("STOPPED", 2)


def test_status_fargate_tasks_with_exit_codes_and_cost(deployed_stack):
    """On the Fargate path, tasks come from ECS; a running task counts in the cost estimate."""
    definition = local().client("ecs").describe_task_definition(taskDefinition=deployed_stack["TaskDefinitionFamily"])["taskDefinition"]
    ref = next(c["image"] for c in definition["containerDefinitions"] if c["name"] == deployed_stack["ContainerName"])
    if "@" not in ref:
        put_image(deployed_stack, ref.rsplit(":", 1)[1], "status-fargate")
    started = json.loads(kinase("run-task", "--json", env=aws_env()).stdout)["data"]["tasks"][0]["task_id"]
    data = json.loads(kinase("status", "--json", env=aws_env()).stdout)["data"]
    listed = {t["task_id"]: t for t in data["tasks"]}
    assert started in listed
    assert "usd_per_hour" in data["cost"] and data["cost"]["prices_as_of"]


def test_status_human_highlights_a_non_empty_dlq(deployed_stack):
    sqs = local().client("sqs")
    drain(deployed_stack["DeadLetterQueueUrl"])
    sqs.send_message(QueueUrl=deployed_stack["DeadLetterQueueUrl"], MessageBody="poison")
    proc = kinase("status", "--local", env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    dlq_line = next(line for line in proc.stdout.splitlines() if "DLQ" in line)
    assert "\x1b[1;31m1 waiting" in dlq_line
    for part in ("kinase-dev-network", deployed_stack["RepositoryUri"], deployed_stack["StreamName"], "queue", "cost"):
        assert part in proc.stdout

    drain(deployed_stack["DeadLetterQueueUrl"])
    calm = kinase("status", "--local", env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    dlq_line = next(line for line in calm.stdout.splitlines() if "DLQ" in line)
    assert "0 waiting" in dlq_line and "\x1b[1;31m" not in dlq_line


def test_status_missing_stack_tells_to_deploy(local_stack):
    line = one_error_line(kinase("status", "--local", "--env", "nosuch"))
    assert "kinase-nosuch-network is not deployed" in line and "kinase deploy --local --env nosuch" in line


def test_logs_missing_stack_tells_to_deploy(local_stack):
    line = one_error_line(kinase("logs", "--local", "--env", "nosuch"))
    assert "not deployed" in line and "kinase deploy --local --env nosuch" in line


def test_logs_follow_prints_new_events_until_interrupted(worker_logs, deployed_stack):
    import os
    import signal
    import subprocess

    from support.cli import KINASE, ROOT

    proc = subprocess.Popen(
        [*KINASE, "logs", "--follow", "--json", "--task", TASK_B],
        cwd=ROOT,
        text=True,
        env={**os.environ, **aws_env(), "KINASE_POLL_SECONDS": "0.2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert json.loads(proc.stdout.readline())["message"] == "b: starting"
    stream = f"worker/{deployed_stack['ContainerName']}/{TASK_B}"
    local().client("logs").put_log_events(
        logGroupName=worker_logs, logStreamName=stream, logEvents=[{"timestamp": int(time.time() * 1000), "message": "b: later"}]
    )
    assert json.loads(proc.stdout.readline())["message"] == "b: later"
    os.killpg(proc.pid, signal.SIGINT)
    _, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors


def test_hostile_log_lines_are_shown_as_text(worker_logs, deployed_stack):
    """Log lines are untrusted (a source name, a message field): markup and escapes are shown, not run."""
    task = "0d" * 16
    stream = f"worker/{deployed_stack['ContainerName']}/{task}"
    line = "oops \x1b[2J\x1b]0;pwned\x07 [/x][link=https://evil.example/]click[/link] \u202eevil"
    logs = local().client("logs")
    logs.create_log_stream(logGroupName=worker_logs, logStreamName=stream)
    logs.put_log_events(logGroupName=worker_logs, logStreamName=stream, logEvents=[{"timestamp": int(time.time() * 1000), "message": line}])

    human = kinase("logs", "--task", task, env=aws_env())
    assert human.returncode == 0, human.stderr
    assert "\x1b" not in human.stdout and "\u202e" not in human.stdout
    assert "oops \\x1b[2J\\x1b]0;pwned\\x07 [/x][link=https://evil.example/]click[/link] \\u202eevil" in human.stdout

    as_json = kinase("logs", "--task", task, "--json", env=aws_env())
    assert [json.loads(raw)["message"] for raw in as_json.stdout.splitlines()] == [line]


def test_status_shows_the_running_counts_of_the_streams_checkpoint(deployed_stack):
    """The one-off worker's checkpoint in the stack's bucket, written by the worker's store from its analyse stage:
    `status --json` carries its counts (names declared as keyed by data), the table shows them at 80 columns."""
    from support.checkpoint_counts import EXPECTED, POSITION, analysed_stages, incarnation
    from support.json_contract import envelope
    from worker import layout
    from worker.checkpoint import CheckpointStore
    from worker.metrics import Metrics
    from worker.sources.kinds import kvs_source

    stream, bucket = deployed_stack["StreamName"], deployed_stack["FramesBucketName"]
    s3 = local().client("s3")
    key = layout.checkpoint_key(stream)
    store = CheckpointStore(s3, bucket, key, stream, kvs_source(stream), incarnation(), Metrics(stream))
    store.save({**POSITION, "stages": analysed_stages(stream)})
    try:
        proc = kinase("status", "--local", "--json")
        assert proc.returncode == 0, proc.stderr
        assert envelope(proc.stdout, "status")["counts"] == EXPECTED
        shown = kinase("status", "--local", env={"COLUMNS": "80"})
        assert shown.returncode == 0, shown.stderr
        rows = [line for line in shown.stdout.splitlines() if "Door [red]1" in line or "bay\\u202e" in line]
        assert len(rows) == 2 and "in person×2" in rows[0] and "Fall×1" in rows[1], shown.stdout
        wide = [line for line in shown.stdout.splitlines() if len(line) > 80 and not line.startswith("dashboard https://")]
        assert not wide, wide  # the dashboard's URL alone is printed whole, to stay clickable
    finally:
        s3.delete_object(Bucket=bucket, Key=key)

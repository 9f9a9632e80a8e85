"""Every command's `--json`, run for real against the local stack, keeps the rules of docs/OPERATIONS.md.

One envelope on stdout, snake_case keys at every depth, ISO 8601 UTC times (tests/support/json_contract.py).
A command that gains `--json` must be run here (or name the test that runs it): the last test
reads the command tree and fails on one that is in neither list.
"""

from __future__ import annotations

import os

import pytest
import typer.main

from kinase_cli.main import app
from kinase_cli.workflows.samples import shapes_video
from support.cli import kinase
from support.json_contract import envelope, json_lines
from support.messages import frame
from support.ops import aws_env, docker_calls, drain, fake_docker, put_image
from worker import contract

pytestmark = pytest.mark.e2e

RUN_HERE = {
    "outputs",
    "deploy",
    "diff",
    "synth",
    "status",
    "local status",
    "local up",
    "local down",
    "stream put",
    "stream ls",
    "stream describe",
    "watch",
    "dlq ls",
    "dlq redrive",
    "dlq purge",
    "push-image",
    "run-task",
    "stop-task",
    "logs",
    "bootstrap",
    "cost",
}
COVERED_ELSEWHERE = {
    **dict.fromkeys(
        ("stream create", "stream rm", "fleet up", "fleet scale", "fleet down", "fleet status"),
        "tests/e2e/test_fleet.py::test_six_streams_three_workers_each_stream_once_failover_and_runtime_streams",
    ),
    "stream adopt": "tests/e2e/test_fleet.py::test_adopted_stream_is_tagged_leased_and_kept_on_rm",
    "fleet roll": "tests/e2e/test_fleet_roll.py::test_a_fleet_rolled_while_video_is_put_delivers_every_frame_once_without_a_gap",
    "destroy": "tests/e2e/test_local_e2e.py::test_second_environment_deploys_and_destroys_cleanly",
    "demo": "tests/e2e/test_demo.py::test_demo_runs_the_whole_pipeline_and_matches_the_ground_truth",
    "rules check": "tests/e2e/test_rules_cli.py::test_check_lists_every_error_on_its_own_line_and_fails",
    "events": "tests/e2e/test_events.py::test_json_lines_one_per_event_duplicates_once_invalid_counted_and_left",
    **dict.fromkeys(
        ("notify add", "notify ls", "notify rm"), "tests/e2e/test_notify.py::test_ls_and_rm_on_the_local_stack_with_json_envelopes"
    ),
    **dict.fromkeys(
        ("rules apply", "rules show"), "tests/e2e/test_rules_cli.py::test_apply_show_versions_and_an_invalid_apply_changes_nothing"
    ),
}


def run_json(*args: str, command: str, env: dict | None = None, code: int = 0, timeout: float = 600) -> dict:
    assert command in RUN_HERE
    proc = kinase(*args, "--json", env=env, timeout=timeout)
    assert proc.returncode == code, proc.stderr[-3000:]
    return envelope(proc.stdout, command)


def test_stack_commands(deployed_stack, tmp_path):
    outputs = run_json("outputs", "--local", command="outputs")
    assert outputs == deployed_stack
    assert run_json("deploy", "--local", command="deploy") == deployed_stack
    differences = run_json("diff", "--local", command="diff")
    assert f"Number of stacks with differences: {differences['differences']}" in "\n".join(differences["text"])
    synth = run_json("synth", "--out", str(tmp_path / "cdk.out"), command="synth")
    assert all(os.path.exists(p) for p in synth["templates"])
    bootstrapped = run_json("bootstrap", "--local", command="bootstrap")
    assert bootstrapped["local"] is True and bootstrapped["account"]


def test_cost():
    estimate = run_json("cost", "--region", "eu-west-1", "--streams", "9", "--save", "--web", command="cost")
    assert estimate["usd_per_month"] > 0
    assert set(estimate) == {  # as docs/OPERATIONS.md ("Machine output") lists them
        *("estimate", "region", "priced_region", "prices_as_of", "prices_source", "streams", "hours_per_day", "workers", "fleet"),
        *("streams_per_worker", "save", "web", "workload", "usd_per_stream_hour", "usd_per_day", "usd_per_month", "lines"),
    }
    packing = {key: estimate[key] for key in ("workers", "fleet", "streams_per_worker", "save", "web")}
    assert packing == {"workers": 3, "fleet": True, "streams_per_worker": 4, "save": True, "web": True}
    line_keys = {"item", "quantity_per_stream_hour", "unit", "unit_usd", "usd_per_stream_hour", "usd_per_day"}
    assert all(set(line) == line_keys for line in estimate["lines"])


def test_status_and_local_status(deployed_stack, local_stack, tmp_path):
    status = run_json("status", "--local", command="status")
    assert status["queue"]["url"] == deployed_stack["ResultsQueueUrl"]
    assert all(s["updated_at"] for s in status["stacks"]) and status["stream"]["created_at"]
    local = run_json("local", "status", command="local status")
    assert local["running"] is True
    again = run_json("local", "up", command="local up")
    assert again["already_running"] is True and again["aws_endpoint"] == local_stack["aws_endpoint"]
    nothing = run_json("local", "down", env={"KINASE_HOME": str(tmp_path)}, command="local down")
    assert nothing["stopped"] == []


def test_stream_commands(deployed_stack, tmp_path):
    video = tmp_path / "clip.mp4"
    shapes_video(video, frames=15, fps=15, size=(160, 120), gop=15)
    put = run_json("stream", "put", str(video), "--local", command="stream put", timeout=300)
    assert put["stream"] == deployed_stack["StreamName"] and put["persisted"] == put["fragments"]
    listed = run_json("stream", "ls", "--local", command="stream ls")
    assert deployed_stack["StreamName"] in [s["name"] for s in listed["streams"]]
    described = run_json("stream", "describe", "--local", command="stream describe")
    assert set(described["endpoints"]) == {"put_media", "get_media"}


def test_watch_and_dlq(stack):
    stack.reset()
    stack.send([contract.dumps(frame(stack.bucket, i, ["person"])) for i in range(2)])
    proc = kinase("watch", "--local", "--json", "--count", "2", "--idle-timeout", "10", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(m["frame_index"] for m in json_lines(proc.stdout, "watch")) == [0, 1]

    stack.client("sqs").send_message(QueueUrl=stack.dlq, MessageBody="not json")
    letters = run_json("dlq", "ls", "--local", command="dlq ls")["messages"]
    assert [m["body"] for m in letters] == ["not json"] and letters[0]["first_received_at"]
    redriven = run_json("dlq", "redrive", "--local", "--yes", command="dlq redrive")
    assert (redriven["moved"], redriven["problems"]) == (1, [])
    drain(stack.queue)
    stack.client("sqs").send_message(QueueUrl=stack.dlq, MessageBody="junk")
    assert run_json("dlq", "purge", "--local", "--yes", command="dlq purge")["queue_url"] == stack.dlq


def test_image_and_task_commands(deployed_stack, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_docker(bin_dir)
    log = tmp_path / "docker-calls.jsonl"
    digest = put_image(deployed_stack, "json-contract", "json-contract")
    docker = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log), "FAKE_DOCKER_DIGEST": digest}
    pushed = run_json("push-image", "--local", "--tag", "json-contract", env=docker, command="push-image")
    assert pushed["digest"] == digest and pushed["pushed_at"] and docker_calls(log)

    started = run_json("run-task", env=aws_env(), command="run-task")
    assert started["tasks"][0]["task_id"] and started["exit_code"] is None
    stopped = run_json("stop-task", "--all", "--yes", env=aws_env(), command="stop-task")
    assert started["tasks"][0]["task_id"] in [t["task_id"] for t in stopped["stopping"]]

    failed = run_json("run-task", "--local", "--source", str(tmp_path / "gone.mp4"), "--model", "yolo11n.yaml", command="run-task", code=2)
    assert failed["tasks"][0]["exit_code"] == 2 == failed["exit_code"]

    proc = kinase("logs", "--local", "--since", "1h", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json_lines(proc.stdout, "logs"), "the local run above left log lines"


def json_commands() -> set[str]:
    def walk(group, prefix=()):
        for name, command in group.commands.items():
            path = (*prefix, name)
            if getattr(command, "commands", None):
                yield from walk(command, path)
            elif any("--json" in getattr(p, "opts", ()) for p in command.params):
                yield " ".join(path)

    return set(walk(typer.main.get_command(app)))


def test_every_json_command_is_covered():
    commands = json_commands()
    assert {"status", "dlq purge", "stream ls"} <= commands, "the tree reader finds the --json commands"
    missing = commands - RUN_HERE - set(COVERED_ELSEWHERE)
    assert not missing, f"--json not checked for: {sorted(missing)}"

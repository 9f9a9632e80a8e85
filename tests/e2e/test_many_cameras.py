"""README's many-camera sequence on the local stack from an empty environment, the way it goes on AWS:
deploy → push-image → stream create cam1/cam2 → fleet up → stream put → watch → push-image again (the
running fleet rolls to the new digest) → stream put → watch → fleet down.

Before any push the stacks' task definitions name a tag that was never pushed to the repository
(its tags are immutable and kinase pushes unique ones), so ECS could only fail to pull it and retry
without end: Amazon ECS Developer Guide, "Cannot pull container image errors in Amazon ECS"
(CannotPullContainerError: "manifest for … not found"), and Amazon ECR User Guide, "Preventing image
tags from being overwritten in Amazon ECR" (immutable tags). `fleet up` and `run-task` refuse such a
revision in one line, on the local stack exactly as on AWS. `push-image` runs the fake docker
(support.ops), whose push creates the manifest in the local ECR as a registry does.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from infra import naming
from kinase_cli.workflows.samples import shapes_video
from support.cli import assert_one_line_error, kinase
from support.json_contract import envelope
from support.ops import aws_env, docker_calls, fake_docker, local
from support.worker_stack import SHAPES_ONNX, frame_ids

pytestmark = pytest.mark.e2e

ENV = "manycams"
LOCAL = ("--local", "--env", ENV)
FRAMES, FPS, GOP = 20, 10, 10
WORKER_SETTINGS = ("-e", "KINASE_IMGSZ=320", "-e", "KINASE_START=EARLIEST", "-e", "KINASE_LEASE_DURATION=6")


def run_json(*args: str, command: str, env: dict | None = None, timeout: float = 300) -> dict:
    proc = kinase(*args, "--json", env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return envelope(proc.stdout, command)


@pytest.fixture
def empty_env(local_stack):
    """A freshly deployed environment of its own: nothing pushed, no stream but the stack's; destroyed after."""
    kinase("destroy", *LOCAL, "--yes", timeout=900)  # a previous run's leftovers
    run_json("deploy", *LOCAL, command="deploy", timeout=900)
    yield json.loads(kinase("outputs", *LOCAL, "--json", check=True).stdout)["data"]
    kinase("fleet", "down", *LOCAL, timeout=180)
    kinase("destroy", *LOCAL, "--yes", timeout=900)


def test_readme_many_camera_sequence_from_an_empty_environment(empty_env, tmp_path):
    repo, uri = empty_env["RepositoryName"], empty_env["RepositoryUri"]
    assert local().client("ecr").list_images(repositoryName=repo)["imageIds"] == []

    # Before any push: the task definitions run a tag that is not in the repository; refused in one line each.
    hint = f"`kinase push-image --local --env {ENV} --source-tree`"
    fleet_family, worker_family = naming.fleet_family(ENV), naming.worker_family(ENV)
    refused = kinase("fleet", "up", "--workers", "2", "--model", str(SHAPES_ONNX), *LOCAL)
    assert_one_line_error(refused, f"no worker image has been pushed to {repo} yet", f"the fleet's task definition {fleet_family}:", hint)
    refused = kinase("run-task", "--model", str(SHAPES_ONNX), *LOCAL)
    assert_one_line_error(refused, f"no worker image has been pushed to {repo} yet", f"the worker's task definition {worker_family}:", hint)
    on_aws = kinase("fleet", "up", "--workers", "2", "--env", ENV, env=aws_env())  # the AWS path (moto's ECS) refuses alike
    assert_one_line_error(on_aws, f"the fleet's task definition {fleet_family}:", f"{uri}:latest", "`kinase push-image --env")
    assert local().client("dynamodb").scan(TableName=naming.lease_table_name(ENV))["Items"] == []  # refused before any lease

    # push-image: one push pins the one-off worker's and the fleet's families to the digest the push created.
    bin_dir = tmp_path / "bin"
    fake_docker(bin_dir)
    docker = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(tmp_path / "docker.jsonl")}
    pushed = run_json("push-image", *LOCAL, command="push-image", env=docker)
    assert ["push", f"{uri}:{pushed['tags'][0]}"] in [c["argv"] for c in docker_calls(tmp_path / "docker.jsonl")]
    ecs = local().client("ecs")
    for family in (worker_family, fleet_family):
        definition = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        assert {c["image"] for c in definition["containerDefinitions"]} == {f"{uri}@{pushed['digest']}"}, family
        assert definition["taskDefinitionArn"] in pushed["task_definition_arns"]

    # The README's sequence.
    cams = [run_json("stream", "create", name, *LOCAL, command="stream create")["name"] for name in ("cam1", "cam2")]
    assert cams == [f"kinase-{ENV}-cam1", f"kinase-{ENV}-cam2"]
    up = run_json("fleet", "up", "--workers", "2", "--model", str(SHAPES_ONNX), *WORKER_SETTINGS, *LOCAL, command="fleet up")
    assert len(up["workers"]) == 2
    clip = tmp_path / "door.mp4"
    shapes_video(clip, frames=FRAMES, fps=FPS, size=(320, 240), gop=GOP, seed=7)
    for cam in cams:
        run_json("stream", "put", str(clip), "--stream", cam, *LOCAL, command="stream put")
    watched = kinase("watch", *LOCAL, "--json", "--count", str(FRAMES * len(cams)), "--idle-timeout", "240", timeout=600)
    assert watched.returncode == 0, watched.stderr[-3000:]
    messages = [json.loads(line) for line in watched.stdout.splitlines() if line.startswith("{")]
    ids = frame_ids(messages)
    assert len(ids) == len(set(ids)) == FRAMES * len(cams)
    assert Counter(m["stream_name"] for m in messages) == {cam: FRAMES for cam in cams}

    # A later push moves the running fleet to the new digest: new workers on the newest revision take the streams over.
    again = run_json("push-image", *LOCAL, "--tag", "second", command="push-image", env=docker)
    assert again["digest"] != pushed["digest"]
    rolled = again["fleet"]
    assert rolled["rolled"] and rolled["task_definition"] in again["task_definition_arns"], rolled
    assert len(rolled["workers"]) == 2 and rolled["untaken"] == [], rolled
    for cam in cams:
        run_json("stream", "put", str(clip), "--stream", cam, *LOCAL, command="stream put")
    watched = kinase("watch", *LOCAL, "--json", "--count", str(FRAMES * len(cams)), "--idle-timeout", "240", timeout=600)
    assert watched.returncode == 0, watched.stderr[-3000:]
    later = [json.loads(line) for line in watched.stdout.splitlines() if line.startswith("{")]
    assert Counter(m["stream_name"] for m in later) == {cam: FRAMES for cam in cams}
    assert not set(frame_ids(later)) & set(ids), "frames read before the roll are not read again"

    down = run_json("fleet", "down", *LOCAL, command="fleet down")
    assert sorted(w["pid"] for w in down["stopped"]) == sorted(w["pid"] for w in rolled["workers"])
    assert not any(w["killed"] for w in down["stopped"])

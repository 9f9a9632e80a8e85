"""`run-task --source` on AWS: a local file is uploaded to the frames bucket's inputs/ (which the task role
may read) and the task reads it from there; an s3:// source the role cannot read is refused before any task.

The AWS code path is pointed at the local stack's moto server (support.ops.aws_env); moto's ECS starts
the task (it runs nothing), so what is checked is what the task is given.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from support.cli import kinase, one_error_line
from support.ops import aws_env, local

pytestmark = pytest.mark.e2e


def started_tasks(deployed_stack) -> set[str]:
    ecs = local().client("ecs")
    pages = ecs.get_paginator("list_tasks").paginate(cluster=deployed_stack["ClusterName"])
    return {arn for page in pages for arn in page["taskArns"]}


def push_the_task_image(deployed_stack) -> None:
    """The image run-task checks for before starting a task."""
    from support.ops import newest_task_definition, put_image

    definition = newest_task_definition(deployed_stack)
    image = next(c["image"] for c in definition["containerDefinitions"] if c["name"] == deployed_stack["ContainerName"])
    if "@" not in image:
        put_image(deployed_stack, image.rsplit(":", 1)[1], "run-task")


def test_a_local_file_is_uploaded_to_inputs_and_the_task_reads_it_from_there(deployed_stack, tmp_path):
    push_the_task_image(deployed_stack)
    video = tmp_path / "lobby camera.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    proc = kinase("run-task", "--source", str(video), "--json", env=aws_env())
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    source = data["overrides"]["KINASE_SOURCE"]
    bucket = deployed_stack["FramesBucketName"]
    key = source[len(f"s3://{bucket}/") :]
    assert key == f"inputs/{hashlib.sha256(video.read_bytes()).hexdigest()[:16]}-lobby_camera.mp4"
    assert local().client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == video.read_bytes()
    (task,) = local().client("ecs").describe_tasks(cluster=deployed_stack["ClusterName"], tasks=[data["tasks"][0]["task_arn"]])["tasks"]
    env = {e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]}
    assert env["KINASE_SOURCE"] == source


def test_the_same_file_run_again_is_the_same_object_and_is_not_uploaded_again(deployed_stack, tmp_path):
    """Frame ids follow from the source's key: a new key per run would give every frame of a re-run a new id."""
    push_the_task_image(deployed_stack)
    video = tmp_path / "gate.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 32)
    first = kinase("run-task", "--source", str(video), "--json", env=aws_env())
    second = kinase("run-task", "--source", str(video), "--json", env=aws_env())
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    sources = [json.loads(p.stdout)["data"]["overrides"]["KINASE_SOURCE"] for p in (first, second)]
    assert sources[0] == sources[1]
    assert "uploaded" in first.stderr and "not uploaded again" in second.stderr
    other = tmp_path / "other" / "gate.mp4"  # the same name, other content: other frame ids (they carry the object's name)
    other.parent.mkdir()
    other.write_bytes(video.read_bytes()[::-1])
    third = kinase("run-task", "--source", str(other), "--json", env=aws_env())
    assert third.returncode == 0, third.stderr
    elsewhere = json.loads(third.stdout)["data"]["overrides"]["KINASE_SOURCE"]
    assert elsewhere.rsplit("/", 1)[1] != sources[0].rsplit("/", 1)[1]


@pytest.mark.parametrize(
    ("where", "expected", "hint"),
    [
        (
            "s3://camera-archive-videos/clip.mp4",
            "may not read s3://camera-archive-videos",
            "kinase deploy --input-bucket camera-archive-videos",
        ),
        ("FRAMES/frames/x.jpg", "may read only inputs/ of the frames bucket", "--source FILE"),
    ],
)
def test_an_unreadable_s3_source_is_refused_before_a_task_starts(deployed_stack, where, expected, hint):
    before = started_tasks(deployed_stack)
    source = where.replace("FRAMES", f"s3://{deployed_stack['FramesBucketName']}")
    line = one_error_line(kinase("run-task", "--source", source, env=aws_env()))
    assert expected in line and hint in line
    assert started_tasks(deployed_stack) == before

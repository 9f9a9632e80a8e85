"""`kinase destroy` leaves nothing that bills: the streams `stream create` made are deleted, adopted camera
streams are untagged and kept, every revision of the task-definition families (the GPU ones included) is
deregistered, and the summary says what was removed and what was kept."""

from __future__ import annotations

import pytest

from infra import naming
from kinase_cli.aws.target import Target
from support import json_contract
from support.cli import kinase
from support.terminal import terminal

pytestmark = pytest.mark.e2e

ENV = "razed"
LOCAL = ("--local", "--env", ENV)


def test_destroy_deletes_created_streams_untags_adopted_ones_and_deregisters_the_gpu_families(local_stack):
    tgt = Target(local=True, env=ENV)
    kvs, ecs = tgt.client("kinesisvideo"), tgt.client("ecs")
    kinase("destroy", *LOCAL, "--yes", timeout=900)  # a previous run's leftovers
    kinase("deploy", *LOCAL, "--gpu", check=True, timeout=900)
    prefix = naming.stream_prefix(ENV)
    for name in ("cam1", "cam2"):
        kinase("stream", "create", name, *LOCAL, check=True)
    camera, stray = f"lobby-camera-{ENV}", f"{prefix}stray"  # a camera's own stream; a prefixed one made outside kinase
    for name in (camera, stray):
        if name not in [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]]:
            kvs.create_stream(StreamName=name, DataRetentionInHours=1, MediaType="video/h264")
    kinase("stream", "adopt", camera, *LOCAL, check=True)
    # Revisions outside CloudFormation, and images in the repository: CloudFormation's AWS::ECR::Repository
    # EmptyOnDelete (CloudFormation User Guide) deletes them with the registry stack; moto's does not (local/cfn_gaps.py).
    kinase("push-image", *LOCAL, "--source-tree", "--variant", "gpu", check=True)

    families = [naming.worker_family(ENV), naming.fleet_family(ENV), naming.gpu_family(ENV), naming.gpu_fleet_family(ENV)]
    active = {f: ecs.list_task_definitions(familyPrefix=f, status="ACTIVE")["taskDefinitionArns"] for f in families}
    assert all(active.values()), active
    proc = kinase("destroy", *LOCAL, "--yes", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json_contract.envelope(proc.stdout, "destroy")

    assert data["destroyed"] == data["removed"]["stacks"] == naming.stack_names(ENV)
    assert sorted(data["removed"]["streams"]) == [f"{prefix}cam1", f"{prefix}cam2"]
    assert data["removed"]["task_definition_families"] == families
    assert data["removed"]["task_definition_revisions"] >= 2  # at least the two GPU revisions push-image registered
    assert [s["name"] for s in data["kept"]["streams"]] == [camera]
    (remove_with,) = [b["remove_with"] for b in data["kept"]["buckets"]]
    assert remove_with.startswith("aws s3 rb s3://")
    assert remove_with.endswith(f" --endpoint-url {tgt.endpoint_for('s3')}")  # not real AWS

    left = [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]]
    assert f"{prefix}cam1" not in left and f"{prefix}cam2" not in left and naming.stream_name(ENV) not in left
    assert camera in left and stray in left  # adopted: kept; not the environment's (no tag): untouched
    camera_arn = kvs.describe_stream(StreamName=camera)["StreamInfo"]["StreamARN"]
    assert naming.ENV_TAG not in kvs.list_tags_for_stream(StreamARN=camera_arn).get("Tags", {})
    for family in families:
        assert ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"] == [], family
    for name in (camera, stray):
        kvs.delete_stream(StreamARN=kvs.describe_stream(StreamName=name)["StreamInfo"]["StreamARN"])


def test_destroy_asks_listing_the_streams_and_says_what_it_removed_and_kept(local_stack):
    """On a terminal the question lists the streams to delete; "n" changes nothing. Without --json the
    summary is two lines on stdout: removed, kept."""
    env = "razedtwo"
    kinase("deploy", "--local", "--env", env, check=True, timeout=900)
    kinase("stream", "create", "door", "--local", "--env", env, check=True)
    door = f"{naming.stream_prefix(env)}door"
    with terminal(f"kinase-destroy-{env}", "destroy", "--local", "--env", env, size=(200, 20), env={}) as term:
        term.wait_for(rf"streams to delete \(1\): {door}", r"\[y/N\]")
        term.keys("n", "Enter")
        term.wait_for("not confirmed", "exit=1")
    kvs = Target(local=True, env=env).client("kinesisvideo")
    assert kvs.describe_stream(StreamName=door)["StreamInfo"]["Status"] == "ACTIVE"
    proc = kinase("destroy", "--local", "--env", env, "--yes", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    removed, kept = proc.stdout.strip().splitlines()
    assert removed.startswith(f"removed: 5 stacks; stream(s) {naming.stream_prefix(env)}door; ")
    assert "task-definition revision(s) of" in removed and naming.gpu_fleet_family(env) in removed
    assert kept.startswith("kept: s3://") and "aws s3 rb s3://" in kept

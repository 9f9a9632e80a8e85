"""Two environments side by side on the local stack never see, lease, describe or delete each other's streams.

`prod` and `prodeu` are the realistic pair the name rule admits (`prod-eu` is refused: tests/cli/test_env_names.py).
An environment named before that rule still has streams: `kinase-prod-eu-cam9`, tagged `kinase:env=prod-eu`,
begins with prod's prefix `kinase-prod-`, so the tag decides (infra/naming.py). Tags through TagStream,
UntagStream and ListTagsForStream as the Kinesis Video API reference describes them (API_TagStream,
API_UntagStream, API_ListTagsForStream).
"""

from __future__ import annotations

import json

import pytest

from infra import naming
from support.cli import assert_one_line_error, kinase
from support.json_contract import envelope
from support.poll import until
from support.worker_stack import SHAPES_ONNX, Media

pytestmark = pytest.mark.e2e

PROD, PRODEU = "prod", "prodeu"
LEGACY = "kinase-prod-eu-cam9"  # a stream of environment `prod-eu`, named before environment names lost their `-`
UNTAGGED = "kinase-prod-byhand"  # made outside kinase: prod's prefix, no environment tag


def run_json(env: str, *args: str, command: str) -> dict:
    proc = kinase(*args, "--local", "--env", env, "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return envelope(proc.stdout, command)


def names(env: str) -> set[str]:
    return {s["name"] for s in run_json(env, "stream", "ls", command="stream ls")["streams"]}


def tags(media, name: str) -> dict:
    arn = media.kvs.describe_stream(StreamName=name)["StreamInfo"]["StreamARN"]
    return media.kvs.list_tags_for_stream(StreamARN=arn)["Tags"]


@pytest.fixture(scope="module")
def two_envs(local_stack):
    """Both environments deployed, each with a created stream `cam1`, and the legacy and untagged streams."""
    media = Media(local_stack["aws_endpoint"], local_stack["kinesis_video_endpoint"])
    outputs = {}
    for env in (PROD, PRODEU):
        kinase("deploy", "--local", "--env", env, check=True, timeout=900)
        outputs[env] = json.loads(kinase("outputs", "--local", "--env", env, "--json", check=True).stdout)["data"]
        assert run_json(env, "stream", "create", "cam1", command="stream create")["name"] == f"kinase-{env}-cam1"
    media.kvs.create_stream(StreamName=LEGACY, DataRetentionInHours=1, Tags={naming.ENV_TAG: "prod-eu"})
    media.kvs.create_stream(StreamName=UNTAGGED, DataRetentionInHours=1)
    kinase("push-image", "--local", "--env", PROD, "--source-tree", check=True, timeout=300)  # prod's fleet runs the source tree
    yield media, outputs
    kinase("fleet", "down", "--local", "--env", PROD, timeout=180)


def test_each_environment_lists_only_its_own_streams(two_envs):
    assert names(PROD) == {"kinase-prod-video", "kinase-prod-cam1"}
    assert names(PRODEU) == {"kinase-prodeu-video", "kinase-prodeu-cam1"}


@pytest.mark.parametrize(
    "env, stream, owner",
    [(PROD, "kinase-prodeu-cam1", "prodeu"), (PRODEU, "kinase-prod-cam1", "prod"), (PROD, LEGACY, "prod-eu")],
)
def test_describe_rm_and_adopt_refuse_the_other_environments_stream(two_envs, env, stream, owner):
    media, _ = two_envs
    before = tags(media, stream)
    for args in (("stream", "describe", stream), ("stream", "rm", stream, "--yes"), ("stream", "adopt", stream)):
        assert_one_line_error(kinase(*args, "--local", "--env", env), f"stream {stream} belongs to environment {owner}")
    assert media.kvs.describe_stream(StreamName=stream)["StreamInfo"]["Status"] == "ACTIVE"
    assert tags(media, stream) == before


def test_rm_by_the_short_name_refuses_a_legacy_stream_under_the_prefix(two_envs):
    """`eu-cam9` in prod is `kinase-prod-eu-cam9`: prod's prefix, prod-eu's stream."""
    assert_one_line_error(kinase("stream", "rm", "eu-cam9", "--yes", "--local", "--env", PROD), "belongs to environment prod-eu")


def test_an_untagged_stream_under_the_prefix_is_no_ones_until_adopted_and_free_again_after_rm(two_envs):
    media, _ = two_envs
    assert_one_line_error(kinase("stream", "describe", UNTAGGED, "--local", "--env", PROD), "has no kinase:env tag", "stream adopt")
    assert run_json(PROD, "stream", "adopt", UNTAGGED, command="stream adopt")["adopted"] is True
    assert UNTAGGED in names(PROD) and UNTAGGED not in names(PRODEU)
    removed = run_json(PROD, "stream", "rm", UNTAGGED, "--yes", command="stream rm")
    assert (removed["deleted"], removed["lease_deleted"]) == (False, True)
    assert tags(media, UNTAGGED) == {}  # released: prod's task role no longer reads it, another environment may adopt it
    assert UNTAGGED not in names(PROD)


def test_adopt_in_an_environment_without_a_lease_table_tags_nothing(two_envs):
    media, _ = two_envs
    assert_one_line_error(kinase("stream", "adopt", UNTAGGED, "--local", "--env", "undeployed"), "the environment has no lease table")
    assert tags(media, UNTAGGED) == {}


def test_a_fleet_worker_leases_only_its_environments_streams(two_envs):
    """`fleet up` leases prod's streams only, and drops the lease an earlier `fleet up` gave prod-eu's stream
    (when the prefix alone decided), so prod's worker never reads it."""
    from worker.fleet.leases import LeaseTable

    media, _ = two_envs
    assert LeaseTable(media.client("dynamodb"), naming.lease_table_name(PROD)).ensure(LEGACY)
    up = kinase(
        "fleet", "up", "--workers", "1", "--model", str(SHAPES_ONNX), "-e", "KINASE_LEASE_DURATION=6", "-e", "KINASE_IMGSZ=320",
        "--local", "--env", PROD, "--json", timeout=300,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr[-3000:]
    warnings = " ".join(up.stderr.split())
    assert f"dropped the lease of {LEGACY}: it has the environment's prefix but belongs to environment prod-eu" in warnings
    assert f"not leasing {UNTAGGED}: it has the environment's prefix but has no kinase:env tag" in warnings
    ours = {"kinase-prod-video", "kinase-prod-cam1"}
    last: list[dict] = []

    def leased_ours() -> dict | None:
        last[:] = [run_json(PROD, "fleet", "status", command="fleet status")]
        return last[0] if {s["name"] for s in last[0]["streams"] if s["owner"]} == ours else None

    state = until(leased_ours, lambda: f"prod's fleet leases {sorted(ours)}: {json.dumps(last)[:3000]}", timeout=180, every=1.0)
    assert {s["name"] for s in state["streams"]} == ours
    assert [s["owner"] for s in run_json(PRODEU, "stream", "ls", command="stream ls")["streams"]] == [None, None]

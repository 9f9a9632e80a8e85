"""`kinase bootstrap`, the environment's recorded account/region/profile, and regions without a service.

The cdk CLI is a recording stand-in (KINASE_CDK): these tests check what kinase asks cdk to do, and
that it asks nothing when the region cannot work. STS answers from the local stack's moto server.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from kinase_cli.aws import placement
from kinase_cli.ui.errors import KinaseError
from support.cli import assert_one_line_error, kinase
from support.ops import aws_env

FAKE_CDK = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    if sys.argv[1:] == ["--version"]:
        print("2.1150.0 (build 0000000)")
        sys.exit(0)
    with open(os.environ["FAKE_CDK_LOG"], "a") as log:
        log.write(json.dumps({{"argv": sys.argv[1:], "region": os.environ.get("AWS_REGION"), "profile": os.environ.get("AWS_PROFILE")}}) + "\\n")
    print("Environment bootstrapped.")
    """
)


@pytest.fixture
def cdk_env(tmp_path, local_stack, monkeypatch):
    """The plain AWS code path pointed at the local stack's moto server, with the recording cdk."""
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    script = tmp_path / "cdk"
    script.write_text(FAKE_CDK.format(python=sys.executable))
    script.chmod(0o755)
    env = {k: v for k, v in aws_env().items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    log = tmp_path / "cdk-calls.jsonl"
    return {**env, "KINASE_CDK": str(script), "FAKE_CDK_LOG": str(log)}, log


def calls(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_bootstrap_uses_the_region_the_environment_was_deployed_to(cdk_env):
    env, log = cdk_env
    placement.record("far", "123456789012", "eu-west-2", None)
    proc = kinase("bootstrap", "--env", "far", "--json", env=env, check=True)
    assert json.loads(proc.stdout)["data"] == {"account": "123456789012", "region": "eu-west-2", "profile": None, "local": False}
    (call,) = calls(log)
    assert call["argv"][:2] == ["bootstrap", "aws://123456789012/eu-west-2"]
    assert call["region"] == "eu-west-2"


def test_an_explicit_region_wins_over_the_recorded_one(cdk_env):
    env, log = cdk_env
    placement.record("far2", "123456789012", "eu-west-2", None)
    kinase("bootstrap", "--env", "far2", "--region", "eu-central-1", env=env, check=True)
    (call,) = calls(log)
    assert call["argv"][1] == "aws://123456789012/eu-central-1" and call["region"] == "eu-central-1"


def test_hints_carry_the_recorded_region(cdk_env):
    """A later command's hint works as written: it names the region the stacks were deployed to."""
    env, _ = cdk_env
    placement.record("gone", "123456789012", "ap-southeast-2", None)
    assert_one_line_error(kinase("outputs", "--env", "gone", env=env), "kinase-gone-", "--env gone --region ap-southeast-2")


def test_bootstrap_in_a_region_without_kinesis_video_is_refused_before_cdk(cdk_env):
    """us-west-1 has no Kinesis Video (botocore's endpoint data; cfn-lint E3006 agrees, see tests/infra)."""
    env, log = cdk_env
    proc = kinase("bootstrap", "--region", "us-west-1", env=env)
    assert_one_line_error(proc, "us-west-1 does not offer Kinesis Video Streams (kinesisvideo)", "--region us-west-2")
    assert calls(log) == []


def test_deploy_to_a_region_without_kinesis_video_is_refused_before_any_stack(cdk_env):
    env, log = cdk_env
    proc = kinase("deploy", "--region", "us-west-1", "--yes", env=env)
    assert_one_line_error(proc, "us-west-1 does not offer Kinesis Video Streams", "nothing was created", "--region us-west-2")
    assert calls(log) == []


def test_deploy_gpu_passes_the_instance_type_and_later_deploys_keep_it(cdk_env):
    """--gpu reaches the app as context; a deploy without the flag keeps it; --no-gpu removes it."""
    env, log = cdk_env

    def deploy_contexts(*flags: str) -> list[str]:
        log.unlink(missing_ok=True)
        kinase("deploy", "--env", "gpux", "--region", "us-east-1", "--yes", *flags, env=env, check=True)
        (deploy,) = [c["argv"] for c in calls(log) if c["argv"][0] == "deploy"]
        return [deploy[i + 1] for i, arg in enumerate(deploy) if arg == "--context"]

    assert "gpu_instance_type=g5.xlarge" in deploy_contexts("--gpu", "--instance-type", "g5.xlarge")
    assert placement.recorded("gpux")["gpu_instance_type"] == "g5.xlarge"
    assert "gpu_instance_type=g5.xlarge" in deploy_contexts()
    assert not [c for c in deploy_contexts("--no-gpu") if c.startswith("gpu_instance_type=")]
    assert placement.recorded("gpux")["gpu_instance_type"] is None
    assert "gpu_instance_type=g4dn.xlarge" in deploy_contexts("--gpu")


def test_a_region_without_kinesis_video_suggests_regions_of_its_own_geography():
    """eu-north-1 has no Kinesis Video in botocore's data: the regions offered are eu- ones, not me-south-1."""
    with pytest.raises(KinaseError) as refused:
        placement.check_services("eu-north-1")
    hint = refused.value.hint
    assert "`--region eu-" in hint and "me-south-1" not in hint
    assert placement.nearest_regions("us-west-1", {"me-south-1", "us-east-1", "us-west-2", "eu-west-1"}, 2) == ["us-west-2", "us-east-1"]

"""End to end on the local stack: the real `kinase` commands, moto server and the local Kinesis Video endpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra import naming
from support import json_contract
from support.cli import assert_one_line_error, free_port, kinase, one_error_line

pytestmark = pytest.mark.e2e

NEEDED = (
    "ResultsQueueUrl",
    "DeadLetterQueueUrl",
    "FramesBucketName",
    "StreamName",
    "RepositoryUri",
    "ClusterName",
    "TaskDefinitionArn",
    "SubnetIds",
    "SecurityGroupId",
    "LogGroupName",
    "ContainerName",
)


def local_target(env: str = naming.DEFAULT_ENV):
    from kinase_cli.aws.target import Target

    return Target(local=True, env=env)


def test_deployed_outputs_name_real_resources(deployed_stack):
    assert set(NEEDED) <= deployed_stack.keys()
    assert deployed_stack["StreamName"] == naming.stream_name(naming.DEFAULT_ENV)
    assert all(s.startswith("subnet-") for s in deployed_stack["SubnetIds"].split(","))
    assert deployed_stack["SecurityGroupId"].startswith("sg-")
    target = local_target()
    stream = target.client("kinesisvideo").describe_stream(StreamName=deployed_stack["StreamName"])["StreamInfo"]
    assert stream["Status"] == "ACTIVE" and stream["DataRetentionInHours"] == int(deployed_stack["StreamRetentionHours"])
    task = target.client("ecs").describe_task_definition(taskDefinition=deployed_stack["TaskDefinitionArn"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["name"] == deployed_stack["ContainerName"] and container["memory"] > 0
    assert {"name": "KINASE_SOURCE", "value": f"kvs://{deployed_stack['StreamName']}"} in container["environment"]
    target.client("s3").head_bucket(Bucket=deployed_stack["FramesBucketName"])
    attrs = target.client("sqs").get_queue_attributes(QueueUrl=deployed_stack["ResultsQueueUrl"], AttributeNames=["RedrivePolicy"])
    assert json.loads(attrs["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 5
    clusters = target.client("ecs").describe_clusters(clusters=[deployed_stack["ClusterName"]])["clusters"]
    assert clusters[0]["status"] == "ACTIVE"
    stored = json.loads((Path(os.environ["KINASE_HOME"]) / "local" / naming.DEFAULT_ENV / "outputs.json").read_text())
    assert stored == deployed_stack


def test_outputs_table_and_status(deployed_stack, local_stack):
    table = kinase("outputs", "--local", check=True).stdout
    assert "ResultsQueueUrl" in table and deployed_stack["StreamName"] in table
    status = json.loads(kinase("local", "status", "--json", check=True).stdout)["data"]
    assert status["running"] and status["bootstrapped"]
    assert status["aws_endpoint"] == local_stack["aws_endpoint"] and "localhost" in status["aws_endpoint"]


def test_diff_shows_no_differences_after_deploy(deployed_stack):
    proc = kinase("diff", "--local", check=True)
    assert "Number of stacks with differences: 0" in proc.stdout


def test_deploy_again_is_a_no_op_that_keeps_the_outputs(deployed_stack):
    proc = kinase("deploy", "--local", "--json", check=True)
    assert json.loads(proc.stdout)["data"] == deployed_stack


def test_second_environment_deploys_and_destroys_cleanly(local_stack):
    env = "e2e"
    deployed = json.loads(kinase("deploy", "--local", "--env", env, "--json", check=True).stdout)["data"]
    assert deployed["StreamName"] == naming.stream_name(env)
    outputs = json.loads(kinase("outputs", "--local", "--env", env, "--json", check=True).stdout)["data"]
    assert outputs == deployed
    kvs = local_target(env).client("kinesisvideo")
    assert kvs.describe_stream(StreamName=deployed["StreamName"])["StreamInfo"]["Status"] == "ACTIVE"

    for answer in ("n\n", "y\n"):  # no terminal to ask on: even a "y" in a pipe does not confirm
        refused = kinase("destroy", "--local", "--env", env, input=answer)
        assert "--yes" in one_error_line(refused, only=True)
    assert kinase("outputs", "--local", "--env", env, check=True).returncode == 0

    destroyed = json_contract.envelope(kinase("destroy", "--local", "--env", env, "--yes", "--json", check=True).stdout, "destroy")
    assert {k: destroyed[k] for k in ("env", "local", "destroyed")} == {"env": env, "local": True, "destroyed": naming.stack_names(env)}
    assert destroyed["removed"]["stacks"] == naming.stack_names(env) and destroyed["removed"]["streams"] == []
    from kinase_cli.aws.outputs import stack_status

    for concern in naming.CONCERNS:
        stack = stack_status(local_target(env), concern)
        assert stack is None or stack["StackStatus"] == "DELETE_COMPLETE", concern
    assert deployed["StreamName"] not in [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]]
    assert_one_line_error(kinase("outputs", "--local", "--env", env), "is not deployed", f"kinase deploy --local --env {env}")


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/cmdline").read_bytes() != b""


def test_local_up_is_idempotent_and_down_leaves_no_process(tmp_path):
    home = {"KINASE_HOME": str(tmp_path)}
    port, kvs_port = str(free_port()), str(free_port())
    try:
        kinase("local", "up", "--port", port, "--kvs-port", kvs_port, env=home, check=True, timeout=300)
        state = json.loads((tmp_path / "local" / "state.json").read_text())
        pids = [state["moto"]["pid"], state["kvs"]["pid"]]
        assert all(_alive(p) for p in pids)
        assert state["aws_endpoint"] == f"http://localhost:{port}"
        assert state["kinesis_video_endpoint"] == f"http://localhost:{kvs_port}"

        again = kinase("local", "up", "--port", port, "--kvs-port", kvs_port, env=home, check=True)
        assert "already running" in again.stderr
        assert json.loads((tmp_path / "local" / "state.json").read_text())["moto"]["pid"] == pids[0]
    finally:
        down = kinase("local", "down", env=home, check=True)
    assert "stopped" in down.stderr
    assert not any(_alive(p) for p in pids)
    assert not (tmp_path / "local" / "state.json").exists()
    assert "not running" in kinase("local", "status", env=home, check=True).stdout
    assert json.loads(kinase("local", "status", "--json", env=home, check=True).stdout)["data"]["running"] is False
    assert kinase("local", "down", env=home, check=True).returncode == 0


def test_down_never_kills_a_process_that_is_not_ours(tmp_path):
    """A stale record whose pid now belongs to another program is forgotten, not killed."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "local").mkdir()
        record = {
            "pid": other.pid,
            "argv": [sys.executable, "-m", "moto.server", "-H", "localhost", "-p", "1"],
            "port": 1,
            "endpoint": "http://localhost:1",
            "log": str(tmp_path / "moto.log"),
        }
        (tmp_path / "local" / "state.json").write_text(
            json.dumps({"moto": record, "aws_endpoint": "http://localhost:1", "kinesis_video_endpoint": "http://localhost:2"})
        )
        kinase("local", "down", env={"KINASE_HOME": str(tmp_path)}, check=True)
        assert other.poll() is None
        assert not (tmp_path / "local" / "state.json").exists()
    finally:
        other.kill()
        other.wait()


# Bad input: one line `error: ...`, a non-zero exit, never a traceback.


def test_local_stack_not_running(tmp_path):
    proc = kinase("outputs", "--local", env={"KINASE_HOME": str(tmp_path)})
    assert_one_line_error(proc, "the local stack is not running", "kinase local up")
    proc = kinase("deploy", "--local", env={"KINASE_HOME": str(tmp_path)})
    assert_one_line_error(proc, "the local stack is not running")


def test_local_up_on_a_busy_port(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("localhost", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = kinase("local", "up", "--port", str(port), "--kvs-port", str(free_port()), env={"KINASE_HOME": str(tmp_path)})
    assert_one_line_error(proc, f"port {port} on localhost is already in use", "--port")
    assert not (tmp_path / "local" / "state.json").exists()


def test_stack_not_deployed(local_stack):
    assert_one_line_error(
        kinase("outputs", "--local", "--env", "nosuch"), "kinase-nosuch-network is not deployed", "kinase deploy --local --env nosuch"
    )


def test_unknown_profile(tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nregion = us-east-1\n")
    env = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials")}
    assert_one_line_error(kinase("outputs", "--profile", "nosuch", env=env), "nosuch")


def test_no_credentials(tmp_path):
    env = {
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_REGION": "us-east-1",
    }
    assert_one_line_error(kinase("outputs", env=env), "no AWS credentials found")


def test_cdk_missing_on_deploy(local_stack, tmp_path):
    proc = kinase("deploy", "--local", "--env", "nocdk", env={"KINASE_CDK": str(tmp_path / "cdk")})
    assert_one_line_error(proc, "cdk CLI was not found", "npm ci")

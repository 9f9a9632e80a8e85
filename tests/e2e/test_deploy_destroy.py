"""`kinase deploy` asks before broadening security changes on AWS; `kinase destroy` stops workers first.

The AWS code path (no --local) is pointed at the local stack's moto server through the standard
AWS_ENDPOINT_URL variables (support.ops.aws_env), so the security diff reads the templates the
session deployed, as it reads them from CloudFormation on AWS.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from infra import naming
from kinase_cli.local import runs
from kinase_cli.local.stack import cmdline
from support.cli import KINASE, ROOT, kinase, one_error_line
from support.ops import aws_env, local
from support.poll import until

pytestmark = pytest.mark.e2e

SHAPES_MODEL = ROOT / "models" / "shapes-yolo11n.onnx"


def compute_template() -> str:
    body = local().client("cloudformation").get_template(StackName=naming.stack_name(naming.DEFAULT_ENV, "compute"))["TemplateBody"]
    return body if isinstance(body, str) else json.dumps(body)


def test_a_broadening_change_without_a_terminal_is_refused_without_yes(deployed_stack):
    before = compute_template()
    proc = kinase("deploy", "--input-bucket", "camera-archive-videos", env=aws_env(), input="y\n", timeout=600)
    assert "not confirmed: no terminal to ask on" in one_error_line(proc)
    assert "--yes" in one_error_line(proc)
    # What was asked about is shown: the new grant on the other bucket, and the running cost.
    assert "camera-archive-videos" in proc.stderr and "s3:GetObject" in proc.stderr, proc.stderr
    assert "per stream-hour" in proc.stderr and "ESTIMATE" in proc.stderr
    assert "deploying" not in proc.stderr
    assert compute_template() == before


def test_the_same_app_has_no_broadening_change(deployed_stack, monkeypatch):
    """The security diff can say no: the deployed templates against the same app and context."""
    from kinase_cli.aws.target import Target
    from kinase_cli.workflows import approval, deploy

    for key, value in aws_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KINASE_LOCAL", raising=False)
    tgt = Target(region="us-east-1")
    diff = approval.security_diff(tgt, deploy.deploy_context(tgt, []))
    assert diff.broadening is False, diff.lines
    widened = approval.security_diff(tgt, deploy.deploy_context(tgt, ["camera-archive-videos"]))
    assert widened.broadening is True


def test_destroy_stops_a_running_local_worker_first(local_stack, tmp_path):
    env = "h6gone"
    values = json.loads(kinase("deploy", "--local", "--env", env, "--json", check=True, timeout=900).stdout)["data"]
    kinase("push-image", "--local", "--env", env, "--source-tree", check=True)  # run-task --local needs an image, as ECS does
    worker = subprocess.Popen(
        [*KINASE, "run-task", "--local", "--env", env, "--model", str(SHAPES_MODEL), "--imgsz", "320"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def mine() -> list[dict]:
            return [r for r in runs.records() if r.get("settings", {}).get("KINASE_QUEUE_URL") == values["ResultsQueueUrl"]]

        def running() -> list[dict]:
            assert worker.poll() is None, worker.communicate()
            return [r for r in mine() if r["lastStatus"] == "RUNNING"]

        until(running, "the local worker started", timeout=300, every=0.2)
        up = kinase("fleet", "up", "--local", "--env", env, "--workers", "1", "--model", str(SHAPES_MODEL), "--json", check=True)
        (fleet_worker,) = json.loads(up.stdout)["data"]["workers"]
        proc = kinase("destroy", "--local", "--env", env, "--yes", timeout=900)
        assert proc.returncode == 0, proc.stderr
        # The environment's fleet goes too (it would otherwise keep renewing leases in a table that is gone).
        assert proc.stderr.index("stopped 1 local fleet worker(s)") < proc.stderr.index(f"destroyed {naming.stack_name(env, 'network')}")
        assert "worker.fleet" not in (cmdline(fleet_worker["pid"]) or "")
        stopping = proc.stderr.index("stopping 1 local worker(s)")
        assert (
            stopping < proc.stderr.index("stopped 1 local worker(s)") < proc.stderr.index(f"destroyed {naming.stack_name(env, 'network')}")
        )
        assert worker.wait(timeout=60) is not None  # kinase destroy waited for it: it is gone already
        assert "kept: s3://" in proc.stdout and "aws s3 rb s3://" in proc.stdout  # the retained access-logs bucket, in the summary
        (record,) = mine()
        assert record["lastStatus"] == "STOPPED" and "stoppedAt" in record
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

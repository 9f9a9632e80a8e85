"""`kinase deploy --gpu` on the local stack: an instance type that cannot work is refused in one line,
naming types to choose instead, before any stack is created (moto serves EC2's instance types and their
per-zone offerings; the quota check is AWS-only and stubbed in tests/cli/test_gpu_preflight.py)."""

from __future__ import annotations

import pytest

from infra import naming
from kinase_cli.aws.outputs import stack_status
from kinase_cli.aws.target import Target
from support.cli import kinase, one_error_line

pytestmark = pytest.mark.e2e

ENV = "gpuno"


@pytest.mark.parametrize(
    ("instance_type", "why"),
    [("g5g.xlarge", "g5g.xlarge is arm64"), ("m5.xlarge", "m5.xlarge has no GPU"), ("g9.mega", "g9.mega is not an EC2 instance type")],
)
def test_deploy_gpu_refuses_a_type_that_cannot_work_before_creating_anything(local_stack, instance_type, why):
    proc = kinase("deploy", "--local", "--env", ENV, "--gpu", "--instance-type", instance_type, timeout=300)
    line = one_error_line(proc, only=True)
    assert line.startswith(f"error: {why}") and "g4dn.xlarge" in line and "--instance-type" in line, line
    assert "deploying" not in proc.stderr
    tgt = Target(local=True, env=ENV)
    assert [c for c in naming.CONCERNS if stack_status(tgt, c)] == []

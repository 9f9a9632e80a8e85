"""`kinase synth` through the real project-local cdk CLI, and the runner's checks on that CLI."""

from __future__ import annotations

import json
import stat

import pytest

from infra import naming
from support.cli import assert_one_line_error, kinase


def fake_cdk(tmp_path, version: str):
    script = tmp_path / "cdk"
    script.write_text(f"#!/bin/sh\necho '{version} (build 0000000)'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_synth_writes_the_five_templates(tmp_path):
    out = tmp_path / "templates"
    proc = kinase("synth", "--out", str(out), "--env", "ci", "--json", check=True, timeout=300)
    data = json.loads(proc.stdout)["data"]
    assert data["dir"] == str(out)
    for name in naming.stack_names("ci"):
        template = json.loads((out / f"{name}.template.json").read_text())
        assert template["Resources"]
    assert sorted(data["templates"]) == sorted(str(out / f"{n}.template.json") for n in naming.stack_names("ci"))
    stream = json.loads((out / "kinase-ci-stream.template.json").read_text())
    assert stream["Resources"]["Stream"]["Properties"]["Name"] == "kinase-ci-video"


def test_cdk_missing_is_one_line_with_the_install_command(tmp_path):
    proc = kinase("synth", "--out", str(tmp_path), env={"KINASE_CDK": str(tmp_path / "nowhere" / "cdk")})
    assert_one_line_error(proc, "cdk CLI was not found", "npm ci")


@pytest.mark.parametrize("version", ["2.1000.0", "3.0.0", "1.204.0"])
def test_unsupported_cdk_is_one_line_with_the_install_command(tmp_path, version):
    proc = kinase("synth", "--out", str(tmp_path / "out"), env={"KINASE_CDK": str(fake_cdk(tmp_path, version))})
    assert_one_line_error(proc, f"cdk CLI {version}", "not supported", "npm ci")


def test_npm_installed_cdk_is_checked_from_its_package_json(tmp_path):
    """npm's `latest` (3.0.0) cannot read our cloud assembly: refused from package.json, before any node start."""
    package = tmp_path / "node_modules" / "aws-cdk"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "aws-cdk", "version": "3.0.0"}))
    script = package / "bin" / "cdk"
    script.write_text("#!/bin/sh\necho 2.9999.0\n")  # what it would say if it were run
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    proc = kinase("synth", "--out", str(tmp_path / "out"), env={"KINASE_CDK": str(script)})
    assert_one_line_error(proc, "cdk CLI 3.0.0", "not supported", "npm ci")

"""Bad command-line input is refused before any work: one `error:` line, exit != 0, nothing written."""

from __future__ import annotations

import pytest

from support.cli import kinase, one_error_line


@pytest.mark.parametrize(
    "env",
    ["a b", "../x", "../../../tmp/kinase-escape", "/abs", "Dev", "a--b", "-x", "x-", "1abc", "a_b", "e" * 33, "", "café", "a\x1b[2J"],
)
@pytest.mark.parametrize("command", [("synth",), ("deploy", "--local"), ("watch", "--local"), ("dlq", "ls", "--local")])
def test_bad_environment_names_are_one_line_and_write_nothing(env, command, tmp_path):
    home = tmp_path / "home"
    proc = kinase(*command, "--env", env, env={"KINASE_HOME": str(home)}, timeout=120)
    line = one_error_line(proc, only=True)
    assert "environment name" in line and "lowercase letters, digits and single hyphens" in line
    assert "\x1b" not in proc.stderr
    assert not home.exists() or not any(home.rglob("cdk.out"))
    assert not (tmp_path / "kinase-escape").exists()


def test_bad_environment_name_from_the_environment_variable(tmp_path):
    line = one_error_line(kinase("status", "--local", env={"KINASE_ENV": "../up", "KINASE_HOME": str(tmp_path)}), only=True)
    assert "environment name '../up' is not valid" in line


@pytest.mark.parametrize("env", ["dev", "ci", "prod-eu-1", "e" * 32])
def test_good_environment_names_pass_validation(env):
    from kinase_cli.options import check_env

    assert check_env(env) == env


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--local", "--region", "us-eats-1"), "did you mean us-east-1"),
        (("--region", "eu-wset-1"), "did you mean eu-west-1"),
        (("--region", "mars-north-1"), "unknown AWS region 'mars-north-1'"),
    ],
)
def test_unknown_regions_are_one_line_with_a_suggestion(args, expected, tmp_path):
    proc = kinase("status", *args, env={"KINASE_HOME": str(tmp_path)}, timeout=120)
    line = one_error_line(proc, only=True)
    assert "unknown AWS region" in line and expected in line


def test_region_from_the_environment_is_checked_too(tmp_path):
    proc = kinase("watch", "--local", env={"AWS_REGION": "us-eats-1", "KINASE_HOME": str(tmp_path)}, timeout=120)
    assert "did you mean us-east-1" in one_error_line(proc, only=True)


def test_known_regions_come_from_botocore():
    from kinase_cli.aws.target import check_region, known_regions

    regions = known_regions()
    assert {"us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"} <= set(regions)
    assert check_region("eu-central-1") == "eu-central-1"


def test_error_lines_quoting_input_show_escapes_not_effects(tmp_path):
    proc = kinase("status", "--region", "x\x1b]0;title\x07", env={"KINASE_HOME": str(tmp_path)}, timeout=120)
    line = one_error_line(proc, only=True)
    assert "\x1b" not in proc.stderr and "\\x1b]0;title\\x07" in line

"""Bad command-line input is refused before any work: one `error:` line, exit != 0, nothing written."""

from __future__ import annotations

import sys

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
    assert "environment name" in line and "lowercase letters and digits" in line
    assert "\x1b" not in proc.stderr
    assert not home.exists() or not any(home.rglob("cdk.out"))
    assert not (tmp_path / "kinase-escape").exists()


def test_bad_environment_name_from_the_environment_variable(tmp_path):
    line = one_error_line(kinase("status", "--local", env={"KINASE_ENV": "../up", "KINASE_HOME": str(tmp_path)}), only=True)
    assert "environment name '../up' is not valid" in line


@pytest.mark.parametrize("env", ["dev", "ci", "prodeu1", "e" * 32])
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


@pytest.mark.parametrize("local", [True, False])
def test_a_directory_as_source_is_one_line_before_any_work(tmp_path, local):
    args = ["run-task", "--source", str(tmp_path), *(["--local"] if local else ["--region", "eu-west-1"])]
    proc = kinase(*args, env={"KINASE_HOME": str(tmp_path / "home")}, timeout=120)
    line = one_error_line(proc, only=True)
    assert f"--source {tmp_path} is a directory" in line
    assert not (tmp_path / "home" / "local" / "runs").exists()


def test_an_unreadable_source_file_is_one_line(tmp_path):
    """Tests run as root, which reads any file whatever its mode bits, so the check runs as `nobody`
    (setpriv) on a mode-000 file."""
    import shutil
    import subprocess

    from support.cli import ROOT

    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to drop root for this test")
    tmp_path.chmod(0o755)
    secret = tmp_path / "clip.mp4"
    secret.write_bytes(b"x")
    secret.chmod(0)
    code = f"from kinase_cli.options import check_source; check_source({str(secret)!r})"
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and f"--source {secret} cannot be read: Permission denied" in proc.stderr


def test_source_check_leaves_urls_and_missing_files_alone():
    from kinase_cli.options import check_source

    assert check_source("s3://bucket/key.mp4") == "s3://bucket/key.mp4"
    assert check_source("/nonexistent/clip.mp4") == "/nonexistent/clip.mp4"  # the worker names a missing file itself


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["watch", "--bogus"], "No such option: --bogus"),
        (["watch", "--count", "many"], "Invalid value for '--count'"),
    ],
)
def test_a_usage_error_is_one_error_line_with_the_help_to_see_and_exit_2(args, expected):
    proc = kinase(*args)
    line = one_error_line(proc, only=True)
    assert proc.returncode == 2
    assert expected in line and line.endswith("(see `kinase watch --help`)")

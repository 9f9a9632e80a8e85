"""`kinase --help` stays fast: it must not import the heavy libraries (checked in sys.modules, not by timing)."""

from __future__ import annotations

import json
import subprocess
import sys

from support.cli import ROOT

HEAVY = (
    "boto3",
    "botocore",
    "torch",
    "ultralytics",
    "cv2",
    "aws_cdk",
    "av",
    "moto",
    "jsonschema",
    "trackers",
    "supervision",
    "http.client",  # not heavy itself, but it imports the email package: 14 ms of a 0.3 s budget
)

PROBE = f"""
import json, sys
from typer.testing import CliRunner
from kinase_cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
assert "Usage:" in result.output
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def heavy_imports(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_root_help_imports_no_heavy_module():
    assert heavy_imports("--help") == []


def test_probe_sees_a_heavy_import():
    """The probe is not blind: importing boto3 in the same interpreter is reported."""
    proc = subprocess.run([sys.executable, "-c", "import boto3\n" + PROBE, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "boto3" in json.loads(proc.stdout.strip().splitlines()[-1])

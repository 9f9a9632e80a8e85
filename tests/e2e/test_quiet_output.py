"""Quiet by default: without a terminal, cdk's progress is summarised (a line per stack and outcome),
its whole output kept in a file whose path is printed; `--verbose` streams it; no Node.js warnings and
no cdk complaint about the options kinase passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.cli import kinase

pytestmark = pytest.mark.e2e

NOISE = ("NodeVersionSupportWarning", "DeprecationWarning", "(node:", "Unknown option", "--trace-warnings")
SCREEN = 40  # lines: the summary must fit on one screen


def test_deploy_prints_a_summary_and_keeps_the_full_cdk_output_in_a_file(deployed_stack):
    proc = kinase("deploy", "--local", timeout=900)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) <= SCREEN, proc.stderr
    assert not any(noise in proc.stderr for noise in NOISE), proc.stderr
    for stack in ("network", "storage", "stream", "registry", "compute"):
        assert sum(f"kinase-dev-{stack}" in line and "✅" in line for line in lines) == 1, proc.stderr
    log = Path(re.search(r"full cdk output: (\S+)", proc.stderr).group(1))
    full = log.read_text()
    assert len(full.splitlines()) > len([line for line in lines if "✅" in line])
    assert "kinase-dev-compute" in full and "Stack ARN" in full and "Stack ARN" not in proc.stderr


def test_verbose_streams_the_whole_cdk_output(deployed_stack):
    loud = kinase("--verbose", "deploy", "--local", timeout=900)
    assert loud.returncode == 0, loud.stderr
    assert "Stack ARN" in loud.stderr and "Deployment time" in loud.stderr  # lines the summary leaves out
    assert not any(noise in loud.stderr for noise in NOISE), loud.stderr


def test_diff_has_no_warning_about_kinase_options(deployed_stack):
    proc = kinase("diff", "--local", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert not any(noise in proc.stdout + proc.stderr for noise in NOISE), proc.stdout + proc.stderr
    assert "kinase-dev-compute" in proc.stdout

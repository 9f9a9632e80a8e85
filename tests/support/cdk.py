"""Synthesizing the CDK app for the infrastructure tests, with cdk-nag registered as infra/app.py does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.stacks import new_app


class Synthesis(NamedTuple):
    """One synthesized app: its templates by stack name, cdk-nag's AwsSolutions report, the folder they were written to."""

    templates: dict[str, dict]
    nag: dict
    outdir: Path


def synth_with_nag(outdir: Path, add_stacks: Callable[[cdk.App], object]) -> tuple[dict[str, dict], dict]:
    """Synthesize with AwsSolutionsChecks registered as in infra/app.py; returns (templates by stack name, nag report).

    An unacknowledged finding makes CDK refuse to synthesize; the report is written either way.
    """
    app = new_app(outdir=str(outdir))
    add_stacks(app)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as exc:
        if "ValidationFailed" not in str(exc):
            raise
    report = json.loads((outdir / "validation-report.json").read_text())
    (nag,) = [r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in outdir.glob("*.template.json")}
    return templates, nag

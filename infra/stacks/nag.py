"""cdk-nag findings we accept, each acknowledged on the construct it concerns, with its reason."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """`rule` as cdk-nag reports it, e.g. `AwsSolutions-IAM5[Resource::*]`."""
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}::{rule}", reason=reason))

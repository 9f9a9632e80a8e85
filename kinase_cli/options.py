"""The options every AWS-facing command shares, declared once."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from infra import naming
from kinase_cli.aws import placement
from kinase_cli.aws.target import Target

Profile = Annotated[Optional[str], typer.Option("--profile", envvar="AWS_PROFILE", help="AWS named profile.", show_default=False)]
Region = Annotated[Optional[str], typer.Option("--region", envvar="AWS_REGION", help="AWS region.", show_default=False)]
Local = Annotated[bool, typer.Option("--local", envvar="KINASE_LOCAL", help="Target the local stack (`kinase local up`) instead of AWS.")]
Env = Annotated[str, typer.Option("--env", envvar="KINASE_ENV", help="Environment name carried by the stack names.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout (see docs/OPERATIONS.md).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def target(profile: Optional[str], region: Optional[str], local: bool, env: str = naming.DEFAULT_ENV) -> Target:
    """The one place a command's target is made; on AWS, flags not given come from the environment's last deploy."""
    if not local:
        profile, region = placement.resolve(env, profile, region)
    return Target(profile=profile, region=region, local=local, env=env)

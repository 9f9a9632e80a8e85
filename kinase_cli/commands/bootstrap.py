"""`kinase bootstrap`: prepare an account and region for CDK deployments, once."""

from __future__ import annotations

import typer

from kinase_cli.aws import placement
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.runners import cdk
from kinase_cli.ui import console, jsonout

EPILOG = """\
Examples:

  kinase bootstrap --profile prod --region eu-west-1
  kinase bootstrap --env prod          # the account and region `kinase deploy --env prod` recorded

Runs the project-local `cdk bootstrap aws://ACCOUNT/REGION` (the account from STS GetCallerIdentity; the region from --region, else the environment's last deploy, else the profile): the CDKToolkit stack with the bucket and roles CDK deploys through. Once per account and region; running it again updates the toolkit stack. A region that lacks a service the stacks use (Kinesis Video is not in every region) is refused first.
"""


@with_target
def bootstrap(json_: Json = False, *, target: Target) -> None:
    """Bootstrap the account and region for CDK (`cdk bootstrap aws://ACCOUNT/REGION`), once per account and region."""
    cdk.checked_executable()
    region_name = target.region_name
    if not target.local:
        placement.check_services(region_name)
    account = target.client("sts").get_caller_identity()["Account"]
    console.step(f"cdk bootstrap aws://{account}/{region_name}")
    cdk.bootstrap(target, account, region_name, on_line=lambda line: console.err.print(line.rstrip(), markup=False, highlight=False))
    if json_:
        jsonout.emit("bootstrap", {"account": account, "region": region_name, "profile": target.profile, "local": target.local})
        return
    console.out.print(f"bootstrapped aws://{account}/{region_name}", highlight=False)
    console.info(f"next: kinase deploy{target.hint_flag() if target.region else f'{target.hint_flag()} --region {region_name}'}")


def register(app: typer.Typer) -> None:
    app.command("bootstrap", epilog=EPILOG)(bootstrap)

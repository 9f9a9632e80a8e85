"""`kinase synth|diff|deploy|destroy|outputs`: the stacks, through the project-local cdk CLI."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from infra import naming
from kinase_cli.options import Env, Json, Local, Profile, Region, Yes, target
from kinase_cli.ui import console

BOOTSTRAP_HINT = "an account/region is bootstrapped once with `node_modules/.bin/cdk bootstrap aws://ACCOUNT/REGION`"
OutDir = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="Directory for the templates (default: ./cdk.out).", show_default=False)
]


def synth(
    out: OutDir = None,
    env: Env = naming.DEFAULT_ENV,
    json: Json = False,
) -> None:
    """Write the CloudFormation templates of all stacks (cdk-nag checks run too) without deploying."""
    from kinase_cli.aws.target import Target
    from kinase_cli.runners import cdk
    from kinase_cli.ui import jsonout

    out = (out or Path("cdk.out")).resolve()
    tgt = Target(env=env)
    with console.err.status("cdk synth (templates + cdk-nag checks)"):
        cdk.run(tgt, ["synth", "--all", "--quiet"], output_dir=out, what="cdk synth")
    templates = [str(out / f"{name}.template.json") for name in naming.stack_names(env)]
    if json:
        jsonout.emit("synth", {"dir": str(out), "templates": templates})
        return
    console.out.print(f"templates written to {out}:", highlight=False)
    for path in templates:
        console.out.print(f"  {Path(path).name}", highlight=False)


def diff(profile: Profile = None, region: Region = None, local: Local = False, env: Env = naming.DEFAULT_ENV) -> None:
    """Show what `kinase deploy` would change in the deployed stacks."""
    from kinase_cli.runners import cdk

    tgt = _checked_target(profile, region, local, env)
    args = ["diff", "--all"] + (["--method=template"] if local else [])  # moto cannot create diff change sets
    cdk.run(tgt, args, on_line=lambda line: console.out.print(line, markup=False, highlight=False), what="cdk diff")


def deploy(
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = naming.DEFAULT_ENV,
    json: Json = False,
) -> None:
    """Create or update all stacks (network, storage, stream, registry, compute) and show their outputs."""
    tgt = _checked_target(profile, region, local, env)
    values = deploy_stacks(tgt)
    _show("deploy", values, json)
    console.info(f"deployed. next: kinase status{tgt.hint_flag()}")


def deploy_stacks(tgt) -> dict[str, str]:
    """`cdk deploy` of every stack for `tgt`; returns the outputs, also stored for later reads."""
    from kinase_cli import paths
    from kinase_cli.runners import cdk

    env, local = tgt.env, tgt.local
    outputs_file = paths.env_dir(env, local) / "cdk-outputs.json"
    outputs_file.unlink(missing_ok=True)
    args = ["deploy", "--all", "--require-approval", "never", "--outputs-file", str(outputs_file), "--progress", "events"]
    if local:
        args.append("--method=direct")  # moto returns no stack outputs through change sets
    console.step(f"deploying {', '.join(naming.stack_names(env))}")
    with _Progress(f"cdk deploy ({env})") as on_line:
        cdk.run(tgt, args, on_line=on_line, what="cdk deploy", hint=BOOTSTRAP_HINT if not local else None)
    values = _flatten(jsonlib.loads(outputs_file.read_text()) if outputs_file.exists() else {})
    if local:
        from kinase_cli.local import cfn_gaps

        cfn_gaps.after_deploy(tgt, values)
    (paths.env_dir(env, local) / "outputs.json").write_text(jsonlib.dumps(values, indent=2, sort_keys=True))
    return values


def destroy(
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = naming.DEFAULT_ENV,
    yes: Yes = False,
) -> None:
    """Delete all stacks of the environment, with the frames bucket's objects and the stream's video."""
    from kinase_cli import paths
    from kinase_cli.aws import outputs
    from kinase_cli.runners import cdk

    tgt = _checked_target(profile, region, local, env)
    names = ", ".join(naming.stack_names(env))
    if not yes:
        typer.confirm(f"Delete {names} and the frames, results and video they hold?", abort=True)
    values = outputs.read(tgt)
    if values.get("FramesBucketName"):
        _empty_bucket(tgt, values["FramesBucketName"])
    if local:
        from kinase_cli.local import cfn_gaps

        cfn_gaps.before_destroy(tgt, values)
    args = ["destroy", "--all", "--force"]  # confirmed above; cdk must not ask again
    with _Progress(f"cdk destroy ({env})") as on_line:
        cdk.run(tgt, args, on_line=on_line, what="cdk destroy")
    (paths.env_dir(env, local) / "outputs.json").unlink(missing_ok=True)
    console.info(f"destroyed {names}")


def outputs_cmd(
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = naming.DEFAULT_ENV,
    json: Json = False,
) -> None:
    """Show the stack outputs: queue URLs, bucket, stream, cluster, task definition, subnets, ..."""
    from kinase_cli.aws import outputs

    values = outputs.read(target(profile, region, local, env), required=naming.CONCERNS)
    _show("outputs", dict(values), json)


def _checked_target(profile, region, local: bool, env: str):
    """The target, after the checks that should fail before any progress output: cdk CLI, local stack."""
    from kinase_cli.runners import cdk

    cdk.checked_executable()
    tgt = target(profile, region, local, env)
    if local:
        tgt.endpoints  # noqa: B018 (raises the one-line error)
    return tgt


def _flatten(by_stack: dict[str, dict[str, str]]) -> dict[str, str]:
    """cdk's outputs file ({stack: {key: value}}) as one mapping of the documented keys."""
    return {k: v for stack in by_stack.values() for k, v in stack.items() if k in naming.OUTPUTS}


def _show(command: str, values: dict[str, str], as_json: bool) -> None:
    if as_json:
        from kinase_cli.ui import jsonout

        jsonout.emit(command, values)
        return
    from rich.table import Table

    table = Table("output", "value", "stack")
    table.columns[1].overflow = "fold"
    for key in naming.OUTPUTS:
        if key in values:
            table.add_row(key, values[key], naming.OUTPUTS[key])
    console.out.print(table)


class _Progress:
    """cdk's output as progress on stderr: a live status line on a terminal, plain lines otherwise."""

    MARKS = ("✅", "❌", "rror", "failed", "Outputs:", "Stack ARN")

    def __init__(self, title: str):
        self.title = title
        self.status = console.err.status(title) if console.err.is_terminal else None

    def __enter__(self):
        if self.status:
            self.status.start()
        return self.on_line

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()

    def on_line(self, line: str) -> None:
        text = line.rstrip()
        if not text:
            return
        if self.status is None:
            console.err.print(text, markup=False, highlight=False)
            return
        self.status.update(f"{self.title}: {text.strip()[:100]}")
        if any(mark in text for mark in self.MARKS):
            console.err.print(text, markup=False, highlight=False)


def _empty_bucket(tgt, bucket: str) -> None:
    """CloudFormation cannot delete a bucket that still holds objects."""
    s3 = tgt.client("s3")
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except s3.exceptions.NoSuchBucket:
        pass


EXAMPLES = {
    "synth": "Examples:\n\n  kinase synth\n\n  kinase synth --out /tmp/templates --env staging",
    "diff": "Examples:\n\n  kinase diff --profile prod\n\n  kinase diff --local",
    "deploy": "Examples:\n\n  kinase deploy --local\n\n  kinase deploy --profile prod --region eu-west-1 --env prod\n\n  kinase deploy --local --json",
    "destroy": "Examples:\n\n  kinase destroy --local --yes\n\n  kinase destroy --profile prod --env prod",
    "outputs": "Examples:\n\n  kinase outputs --local\n\n  kinase outputs --profile prod --json",
}


def register(app: typer.Typer) -> None:
    app.command("synth", epilog=EXAMPLES["synth"])(synth)
    app.command("diff", epilog=EXAMPLES["diff"])(diff)
    app.command("deploy", epilog=EXAMPLES["deploy"])(deploy)
    app.command("destroy", epilog=EXAMPLES["destroy"])(destroy)
    app.command("outputs", epilog=EXAMPLES["outputs"])(outputs_cmd)

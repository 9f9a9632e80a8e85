"""`kinase synth|diff|deploy|destroy|outputs`: the stacks, through the project-local cdk CLI."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from infra import naming
from kinase_cli.aws import outputs, placement
from kinase_cli.aws.target import Target
from kinase_cli.options import Env, Json, Yes, with_target
from kinase_cli.runners import cdk
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import plain
from kinase_cli.workflows import deploy as deploy_workflow

OutDir = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="Directory for the templates (default: ./cdk.out).", show_default=False)
]


def synth(
    out: OutDir = None,
    env: Env = naming.DEFAULT_ENV,
    json_: Json = False,
) -> None:
    """Write the CloudFormation templates of all stacks (cdk-nag checks run too) without deploying."""
    out = (out or Path("cdk.out")).resolve()
    target = Target(env=env)
    with console.err.status("cdk synth (templates + cdk-nag checks)"):
        cdk.run(target, ["synth", "--all", "--quiet"], output_dir=out, what="cdk synth")
    templates = [str(out / f"{name}.template.json") for name in naming.stack_names(env)]
    if json_:
        jsonout.emit("synth", {"dir": str(out), "templates": templates})
        return
    console.out.print(f"templates written to {out}:", highlight=False)
    for path in templates:
        console.out.print(f"  {Path(path).name}", highlight=False)


@with_target
def diff(json_: Json = False, *, target: Target) -> None:
    """Show what `kinase deploy` would change in the deployed stacks."""
    _check(target)
    # `cdk diff` compares every stack by default and has no --all (it warns "Unknown option(s)").
    args = ["diff"] + (["--method=template"] if target.local else [])  # moto cannot create diff change sets
    lines: list[str] = []
    show = lines.append if json_ else (lambda line: console.out.print(line, markup=False, highlight=False))
    cdk.run(target, args, on_line=show, what="cdk diff")
    if json_:
        jsonout.emit(
            "diff", {"env": target.env, "stacks": naming.stack_names(target.env), "differences": _differences(lines), "text": lines}
        )


def _differences(lines: list[str]) -> int | None:
    """cdk's own count ("Number of stacks with differences: N"); None when its output has no count."""
    for line in reversed(lines):
        match = re.search(r"stacks with differences:\s*(\d+)", line)
        if match:
            return int(match[1])
    return None


@with_target
def deploy(
    input_bucket: Annotated[
        Optional[list[str]],
        typer.Option(
            "--input-bucket",
            help="A bucket the worker may read sources from (`run-task --source s3://BUCKET/KEY`); repeatable. "
            "Omitted: the buckets of the last deploy stay allowed.",
            show_default=False,
        ),
    ] = None,
    gpu: Annotated[
        Optional[bool],
        typer.Option(
            "--gpu/--no-gpu",
            help="Add (or remove) GPU workers: an ECS capacity provider on GPU instances that scale to zero when idle "
            "(`run-task --gpu`). Omitted: as the last deploy.",
            show_default=False,
        ),
    ] = None,
    instance_type: Annotated[
        Optional[str],
        typer.Option(
            "--instance-type", help=f"GPU instance type (implies --gpu; default {naming.DEFAULT_GPU_INSTANCE_TYPE}).", show_default=False
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply broadening security changes without asking.")] = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Create or update all stacks (network, storage, stream, registry, compute) and show their outputs.

    On AWS, deploy first shows the security-relevant changes (IAM statements and security-group rules, old against new, from `cdk diff --security-only`) and the estimated running cost, and asks before applying changes that broaden access: those are the changes that can expose data or let the worker do more than it should. Without a terminal it refuses unless --yes. A first deploy creates every grant, so it asks too. Narrowing changes, other changes and --local never ask. Before anything is created, the region is checked for every service the stacks use.
    """
    _check(target)
    values = deploy_workflow.deploy_stacks(
        target, input_buckets=input_bucket, gpu_instance_type=_gpu_instance_type(target, gpu, instance_type), yes=yes
    )
    _show("deploy", values, json_)
    console.info(f"deployed. next: kinase status{target.hint_flag()}")


def _gpu_instance_type(target: Target, gpu: Optional[bool], instance_type: Optional[str]) -> Optional[str]:
    """What --gpu/--no-gpu/--instance-type ask for: an instance type, "" for no GPU workers, None for as before."""
    if gpu is False:
        if instance_type:
            raise KinaseError("--instance-type is for GPU workers; it cannot go with --no-gpu", "drop one of them", exit_code=2)
        return ""
    if gpu is None and instance_type is None:
        return None
    return instance_type or placement.recorded(target.env, target.local).get("gpu_instance_type") or naming.DEFAULT_GPU_INSTANCE_TYPE


@with_target
def destroy(yes: Yes = False, json_: Json = False, *, target: Target) -> None:
    """Delete the environment's stacks, the streams `stream create` made and its task-definition revisions.

    The frames bucket's objects and the stream's video go with the stacks. Adopted camera streams are untagged, never deleted. The question lists the streams to delete and to untag; the summary says what was removed and what was kept.
    """
    _check(target)
    names = naming.stack_names(target.env)
    plan = functools.cache(lambda: deploy_workflow.destroy_plan(target))
    confirm(lambda: plan().question(names), yes)
    summary = deploy_workflow.destroy_stacks(target, plan())
    if json_:
        jsonout.emit("destroy", {"env": target.env, "local": target.local, "destroyed": names, **summary})
        return
    console.info(f"destroyed {', '.join(names)}")
    _show_summary(summary)


def _show_summary(summary: dict) -> None:
    """What destroy removed and kept, one line each, on stdout (the command's result)."""
    removed, kept = summary["removed"], summary["kept"]
    parts = [f"{len(removed['stacks'])} stacks"]
    if removed["streams"]:
        parts.append(f"stream(s) {', '.join(removed['streams'])}")
    parts.append(f"{removed['task_definition_revisions']} task-definition revision(s) of {', '.join(removed['task_definition_families'])}")
    console.out.print(plain(f"removed: {'; '.join(parts)}"), highlight=False, soft_wrap=True)
    things = [f"stream {s['name']} ({s['why']})" for s in kept["streams"]]
    things += [f"s3://{b['name']} ({b['why']}; remove it with `{b['remove_with']}`)" for b in kept["buckets"]]
    console.out.print(plain(f"kept: {'; '.join(things) or 'nothing'}"), highlight=False, soft_wrap=True)


@with_target
def outputs_cmd(json_: Json = False, *, target: Target) -> None:
    """Show the stack outputs: queue URLs, bucket, stream, cluster, task definition, subnets, ..."""
    values = outputs.read(target, required=naming.CONCERNS)
    _show("outputs", dict(values), json_)


def _check(target: Target) -> None:
    """The checks that should fail before any progress output: cdk CLI, local stack."""
    cdk.checked_executable()
    if target.local:
        target.endpoints  # noqa: B018 (raises the one-line error)


def _show(command: str, values: dict[str, str], as_json: bool) -> None:
    if as_json:
        jsonout.emit(command, values)
        return
    from rich.table import Table

    table = Table("output", "value", "stack")
    table.columns[1].overflow = "fold"
    for key in naming.OUTPUTS:
        if key in values:
            table.add_row(key, values[key], naming.OUTPUTS[key])
    console.out.print(table)


EXAMPLES = {
    "synth": "Examples:\n\n  kinase synth\n\n  kinase synth --out /tmp/templates --env staging",
    "diff": "Examples:\n\n  kinase diff --profile prod\n\n  kinase diff --local --json",
    "deploy": "Examples:\n\n  kinase deploy --local\n\n  kinase deploy --profile prod --region eu-west-1 --env prod\n\n  kinase deploy --local --json",
    "destroy": "Examples:\n\n  kinase destroy --local --yes\n\n  kinase destroy --profile prod --env prod\n\n  kinase destroy --local --yes --json",
    "outputs": "Examples:\n\n  kinase outputs --local\n\n  kinase outputs --profile prod --json",
}


def register(app: typer.Typer) -> None:
    app.command("synth", epilog=EXAMPLES["synth"])(synth)
    app.command("diff", epilog=EXAMPLES["diff"])(diff)
    app.command("deploy", epilog=EXAMPLES["deploy"])(deploy)
    app.command("destroy", epilog=EXAMPLES["destroy"])(destroy)
    app.command("outputs", epilog=EXAMPLES["outputs"])(outputs_cmd)

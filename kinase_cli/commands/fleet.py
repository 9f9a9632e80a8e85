"""`kinase fleet`: the worker pool that shares the environment's streams, one lease per stream."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from kinase_cli.aws.target import Target
from kinase_cli.options import Json, WorkerRun, with_target, with_worker_options
from kinase_cli.ui import console, fleet_tables, jsonout
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import visible
from kinase_cli.workflows import fleet as fleet_workflow
from kinase_cli.workflows import worker_env

fleet = typer.Typer(
    help="Run a pool of workers that share the environment's streams (one lease per stream).",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n  kinase stream create cam1 && kinase stream create cam2\n\n  kinase fleet up --workers 2\n\n"
        "  kinase fleet status\n\n  kinase fleet scale 4\n\n  kinase fleet down\n\n"
        "On AWS the fleet is the compute stack's ECS service (autoscaled on streams per worker between the count you ask "
        "for and the stack's maximum), on Fargate or, with `fleet up --gpu`, on the GPU instances of `kinase deploy --gpu`; "
        "with --local, worker processes against the local stack."
    ),
)


def _report(command: str, result: dict, json_: bool) -> None:
    """What up, scale and down print: the JSON envelope; or the local workers running (or how many stopped), or the
    service's desired count."""
    if json_:
        jsonout.emit(f"fleet {command}", result)
    elif not result["local"]:
        where = " (GPU instances)" if result.get("gpu") else ""
        console.out.print(Text(f"service {visible(result['service'])}{where}: desired count {result['desired_count']}"))
    elif "workers" in result:
        for w in result["workers"]:
            what = f"worker {w['worker_id']} (pid {w['pid']})" if "pid" in w else f"worker {w.get('worker_id')}"
            console.out.print(Text(visible(what)))
    else:
        console.out.print(f"stopped {len(result['stopped'])} local worker(s)")


@fleet.command(
    "up",
    epilog="Examples:\n\n  kinase fleet up --workers 3\n\n  kinase fleet up --gpu --workers 2\n\n"
    "  kinase fleet up --workers 2 --max-streams-per-worker 4 --local",
)
@with_target
@with_worker_options(
    fleet=True,
    gpu_help="Run the workers on the GPU instances (`kinase deploy --gpu`; one worker per instance) instead of Fargate; "
    "the workers move over by lease hand-over. --local: the workers use CUDA.",
)
def up(
    workers: Annotated[int, typer.Option("--workers", "-n", min=1, help="How many workers to start.")] = 1,
    worker: WorkerRun = WorkerRun(),  # the options of with_worker_options
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Start the fleet: N workers take the leases of the environment's streams and balance them."""
    if not target.local and (worker.values.get("model") or worker.env_vars):
        raise KinaseError("--model and --env-var apply to local workers", "on AWS the fleet runs its task definition's settings")
    overrides = worker_env.build(worker, local=target.local)
    _report("up", fleet_workflow.up(target, workers, overrides, worker.gpu), json_)
    if not json_:
        console.info(f"next: kinase fleet status{target.hint_flag()}")


@fleet.command("scale", epilog="Examples:\n\n  kinase fleet scale 4\n\n  kinase fleet scale 1 --local")
@with_target
def scale(
    workers: Annotated[int, typer.Argument(min=0, help="The number of workers (on AWS also the autoscaling minimum).")],
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Change the number of workers of the fleet that is up (Fargate or GPU); stopped workers release their leases and the others take them."""
    _report("scale", fleet_workflow.scale(target, workers), json_)


@fleet.command("down", epilog="Examples:\n\n  kinase fleet down\n\n  kinase fleet down --local --json")
@with_target
def down(json_: Json = False, *, target: Target) -> None:
    """Stop every worker: each flushes, checkpoints and releases its leases. Streams and checkpoints stay."""
    _report("down", fleet_workflow.down(target), json_)


@fleet.command("roll", epilog="Examples:\n\n  kinase fleet roll\n\n  kinase fleet roll --local --json")
@with_target
def roll(json_: Json = False, *, target: Target) -> None:
    """Move the running fleet to the newest revision of its task definition (after `kinase push-image`, or new
    settings) without a gap: new workers start first, then the old ones checkpoint and hand their streams over."""
    from kinase_cli.aws import outputs as stack_outputs

    result = fleet_workflow.roll(target, stack_outputs.read(target, required=("storage", "compute")))
    if json_:
        jsonout.emit("fleet roll", result)
        return
    revision = visible(result["task_definition"].rsplit("/", 1)[-1])
    if not result["rolled"]:
        console.out.print(Text(f"nothing to roll: the fleet runs {revision} already" if result.get("workers") != [] else "no worker runs"))
    elif result["local"]:
        console.out.print(Text(f"rolled {len(result['workers'])} local worker(s) to {revision}"))
        if result["untaken"]:
            console.warn(f"not yet taken by the new workers: {', '.join(result['untaken'])}; see `kinase fleet status{target.hint_flag()}`")
    else:
        console.out.print(Text(f"service {visible(result['service'])}: rolling {result['desired_count']} task(s) to {revision}"))
        console.info("ECS starts the new tasks before it stops the old ones; follow it with `kinase fleet status`")


@fleet.command("status", epilog="Examples:\n\n  kinase fleet status\n\n  kinase fleet status --local --json")
@with_target
def status(json_: Json = False, *, target: Target) -> None:
    """Workers with the streams each holds; streams with owner, lag, fps and last checkpoint; scaling limits."""
    result = fleet_workflow.status(target)
    if json_:
        jsonout.emit("fleet status", result)
        return
    scaling = result["scaling"]
    if scaling:
        console.out.print(Text(fleet_workflow.scaling_text(scaling)))
    console.out.print(fleet_tables.workers(result, title=f"{len(result['workers'])} worker(s)"))
    console.out.print(fleet_tables.streams(result["streams"], title=f"{len(result['streams'])} stream(s)"))


def register(app) -> None:
    app.add_typer(fleet, name="fleet")

"""`kinase run-task` and `kinase stop-task`: worker tasks on Fargate, or a local worker process."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, WorkerRun, Yes, with_target, with_worker_options
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import plain
from kinase_cli.workflows import run_task as run_workflow
from kinase_cli.workflows import worker_env
from kinase_cli.workflows.tasks import exit_code, task_summary
from worker.settings import BY_FIELD as WORKER_SETTINGS
from worker.settings import var

MAX_COUNT = 10  # ECS RunTask starts at most 10 tasks per call

RUN_EPILOG = f"""\
Examples:

  kinase run-task                                  # one task on the stack's stream
  kinase run-task --follow                         # stream its logs; exit with the worker's exit code
  kinase run-task --source clip.mp4 --wait         # uploaded to the frames bucket's inputs/ first
  kinase run-task --source s3://bucket/clip.mp4 --wait   # a bucket allowed with `kinase deploy --input-bucket bucket`
  kinase run-task --every 5 --conf 0.4 --count 2 --cpu 2048 --memory 4096
  kinase run-task {worker_env.ENV_VAR_EXAMPLE} -e {WORKER_SETTINGS["start"].name}=EARLIEST
  kinase run-task --local --source clip.mp4 --model models/shapes-yolo11n.onnx

Which image runs: the newest ACTIVE revision of the stack's task-definition family, which `kinase push-image` pins to the digest it just pushed (see `kinase push-image --help`).

--local runs the worker as a process on this machine (`python -m worker`) with the environment the task definition gives the container, the overrides, and the local stack's endpoints; its output is streamed and kept for `kinase logs --local`, and its exit code is kinase's.

The cost shown is an ESTIMATE from a price table in kinase (Fargate on-demand Linux/x86).
"""

STOP_EPILOG = """\
Examples:

  kinase stop-task 0123456789abcdef0123456789abcdef
  kinase stop-task --all -y
"""


@with_target
@with_worker_options(
    fleet=False,
    gpu_help="Run on the GPU workers' capacity provider (`kinase deploy --gpu`) with the GPU task definition; "
    f"an instance starts for it if none runs. Locally: {var('device')}=cuda.",
)
def run_task(
    stream: Annotated[
        Optional[str], typer.Option("--stream", help="Kinesis Video stream to read (default: the stack's stream).", show_default=False)
    ] = None,
    source: Annotated[
        Optional[str],
        typer.Option("--source", help="Read a file path, http(s)://, rtsp:// or s3://bucket/key instead of a stream.", show_default=False),
    ] = None,
    worker: WorkerRun = WorkerRun(),  # the options of with_worker_options
    count: Annotated[int, typer.Option("--count", min=1, max=MAX_COUNT, help="Number of tasks.")] = 1,
    cpu: Annotated[Optional[int], typer.Option("--cpu", help="Task CPU units (1024 = 1 vCPU).", show_default=False)] = None,
    memory: Annotated[Optional[int], typer.Option("--memory", help="Task memory in MiB.", show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the tasks stop; exit with the worker's exit code.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the tasks' logs while they run (implies --wait).")] = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Start worker tasks on the stack's Fargate cluster (or, with --local, a local worker process)."""
    overrides = worker_env.build(worker, local=target.local, stream=stream, source=source)
    outputs = run_workflow.prepare(target, overrides, stream, count)
    if target.local:
        code = _run_local(target, outputs, overrides, count, cpu, memory, json_)
    else:
        code = _run_fargate(target, outputs, overrides, count, cpu, memory, wait or follow, follow, json_, worker.gpu)
    raise typer.Exit(code)


def _run_local(target: Target, outputs, overrides: dict[str, str], count: int, cpu, memory, json_: bool) -> int:
    if count != 1:
        raise KinaseError("--count must be 1 with --local", "the local worker is one foreground process")
    if cpu or memory:
        console.warn("--cpu/--memory size Fargate tasks; the local worker ignores them")
    run = run_workflow.run_local(
        target,
        outputs,
        overrides,
        on_line=lambda line: console.err.print(plain(line), highlight=False, soft_wrap=True),  # diagnostics: stderr
    )
    if json_:
        jsonout.emit("run-task", {"local": True, "tasks": [run], "exit_code": run["exit_code"]})
    else:
        console.info(f"worker {run['task_id']} exited with code {run['exit_code']}")
    return run["exit_code"]


def _run_fargate(
    target: Target, outputs, overrides: dict[str, str], count: int, cpu, memory, wait: bool, follow: bool, json_: bool, gpu: bool
) -> int:
    started = run_workflow.start(target, outputs, overrides, count, cpu, memory, gpu)
    definition, estimate = started.definition, started.estimate
    if not json_:
        console.out.print(
            f"started {len(started.ids)} task(s) on {outputs['ClusterName']} with {definition['family']}:{definition['revision']} "
            f"({started.image})",
            highlight=False,
            soft_wrap=True,
        )
        for task_id in started.ids:
            console.out.print(f"  {task_id}", highlight=False)
        priced = estimate.text() if estimate else "on a GPU instance (EC2 on-demand, not in kinase's price table)"
        console.out.print(f"{started.cpu} CPU units, {started.memory} MiB: {priced} per task", highlight=False, soft_wrap=True)
    code = 0
    stopped: list[dict] = []
    if wait:
        try:
            stopped = run_workflow.wait(target, outputs, started, _log_printer(json_, len(started.arns) > 1) if follow else None)
        except KeyboardInterrupt:
            console.warn(f"stopped waiting; the tasks keep running (`kinase stop-task {' '.join(started.ids)}{target.hint_flag()}`)")
            raise typer.Exit(130) from None
        code = exit_code(stopped, started.container)
    if json_:
        jsonout.emit(
            "run-task",
            {
                "local": False,
                "cluster": outputs["ClusterName"],
                "task_definition_arn": definition["taskDefinitionArn"],
                "image": started.image,
                "cpu": started.cpu,
                "memory": started.memory,
                "overrides": overrides,
                "tasks": [task_summary(task, started.container) for task in stopped]
                if stopped
                else [{"task_id": i, "task_arn": a} for i, a in zip(started.ids, started.arns)],
                "cost_per_task_hour": estimate.as_dict() if estimate else None,
                "gpu": gpu,
                "exit_code": code if wait else None,
            },
        )
    return code


def _log_printer(json_: bool, several: bool):
    def show(event: dict) -> None:
        if json_:
            jsonout.emit_line(event)
        else:
            where = f"[{event['task'][:8]}] " if several else ""
            console.out.print(f"{where}{event['message']}", markup=False, highlight=False, soft_wrap=True)

    return show


@with_target
def stop_task(
    task_ids: Annotated[Optional[list[str]], typer.Argument(metavar="TASK", help="Task ids or ARNs.", show_default=False)] = None,
    all_tasks: Annotated[bool, typer.Option("--all", help="Stop every running task on the stack's cluster.")] = False,
    yes: Yes = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Stop worker tasks (the worker gets SIGTERM, flushes, checkpoints and exits within 30 s)."""
    if target.local:
        raise KinaseError("local workers run in the foreground of `kinase run-task --local`", "stop one with Ctrl-C in its terminal")
    if bool(task_ids) == all_tasks:
        raise KinaseError("give task ids or --all", "e.g. `kinase stop-task --all -y`")
    outputs = stack_outputs.read(target, required=("compute",))
    ecs = target.client("ecs")
    cluster = outputs["ClusterName"]
    if all_tasks:
        pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING")
        task_ids = [arn for page in pages for arn in page["taskArns"]]
        if task_ids:
            confirm(f"Stop {len(task_ids)} task(s) on {cluster}?", yes)
        elif not json_:
            console.info(f"no running tasks on {cluster}")
    stopping = []
    for task_id in task_ids:
        task = ecs.stop_task(cluster=cluster, task=task_id, reason="stopped by kinase stop-task")["task"]
        stopping.append({"task_id": task["taskArn"].rsplit("/", 1)[-1], "task_arn": task["taskArn"]})
        if not json_:
            console.out.print(f"stopping {stopping[-1]['task_id']}", highlight=False)
    if json_:
        jsonout.emit("stop-task", {"cluster": cluster, "stopping": stopping})


def register(app: typer.Typer) -> None:
    app.command("run-task", help=run_task.__doc__, epilog=RUN_EPILOG)(run_task)
    app.command("stop-task", help=stop_task.__doc__, epilog=STOP_EPILOG)(stop_task)

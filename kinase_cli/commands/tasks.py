"""`kinase run-task` and `kinase stop-task`: worker tasks on Fargate, or a local worker process."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from infra import naming
from kinase_cli import paths
from kinase_cli.aws import cost, taskdef
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws.log_tail import CloudWatchTail, poll_seconds, since_time
from kinase_cli.aws.target import Target
from kinase_cli.local import runs as local_runs
from kinase_cli.options import Json, Yes, with_target
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import plain
from kinase_cli.workflows import inputs
from kinase_cli.workflows.fleet import refuse_one_off
from kinase_cli.workflows.tasks import exit_code, task_summary
from kinase_cli.workflows.worker_env import ENV_VAR_EXAMPLE, local_model, overrides
from worker.retry import error_code
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
  kinase run-task {ENV_VAR_EXAMPLE} -e {WORKER_SETTINGS["start"].name}=EARLIEST
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


def _check_stream(t, name: str, outputs) -> None:
    try:
        t.client("kinesisvideo").describe_stream(StreamName=name)
    except Exception as exc:  # botocore ClientError
        if error_code(exc) == "ResourceNotFoundException":
            raise KinaseError(
                f"stream {name} does not exist",
                f"the stack's stream is {outputs.get('StreamName', '?')}; run without --stream to use it",
            ) from None
        raise


@with_target
def run_task(
    stream: Annotated[
        Optional[str], typer.Option("--stream", help="Kinesis Video stream to read (default: the stack's stream).", show_default=False)
    ] = None,
    source: Annotated[
        Optional[str],
        typer.Option("--source", help="Read a file path, http(s)://, rtsp:// or s3://bucket/key instead of a stream.", show_default=False),
    ] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Model path or name (.onnx or .pt).", show_default=False)] = None,
    imgsz: Annotated[Optional[int], typer.Option("--imgsz", min=32, help="Inference image size.", show_default=False)] = None,
    conf: Annotated[Optional[float], typer.Option("--conf", min=0.0, max=1.0, help="Confidence threshold.", show_default=False)] = None,
    every: Annotated[Optional[int], typer.Option("--every", min=1, help="Process every N-th frame.", show_default=False)] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", min=0.0, help="Target frames per second (0 = off).", show_default=False)] = None,
    count: Annotated[int, typer.Option("--count", min=1, max=MAX_COUNT, help="Number of tasks.")] = 1,
    cpu: Annotated[Optional[int], typer.Option("--cpu", help="Task CPU units (1024 = 1 vCPU).", show_default=False)] = None,
    memory: Annotated[Optional[int], typer.Option("--memory", help="Task memory in MiB.", show_default=False)] = None,
    env_vars: Annotated[
        Optional[list[str]], typer.Option("--env-var", "-e", help="Extra worker variable KEY=VALUE (repeatable).", show_default=False)
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the tasks stop; exit with the worker's exit code.")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the tasks' logs while they run (implies --wait).")] = False,
    gpu: Annotated[
        bool,
        typer.Option(
            "--gpu",
            help="Run on the GPU workers' capacity provider (`kinase deploy --gpu`) with the GPU task definition; "
            f"an instance starts for it if none runs. Locally: {var('device')}=cuda.",
        ),
    ] = False,
    json_out: Json = False,
    *,
    target: Target,
) -> None:
    """Start worker tasks on the stack's Fargate cluster (or, with --local, a local worker process)."""
    settings = overrides(stream, source, model, imgsz, conf, every, fps, env_vars or [], target.local)
    if gpu and target.local:
        settings.setdefault(WORKER_SETTINGS["device"].name, "cuda")
    outputs = stack_outputs.read(target, required=("storage", "compute"))
    if stream:
        _check_stream(target, stream, outputs)
    source_name = WORKER_SETTINGS["source"].name
    if source and settings.get(source_name):
        prepared = inputs.prepare(target, outputs, settings[source_name])
        if prepared != settings[source_name]:  # uploaded: messages and keys keep the file's own name
            settings.setdefault(WORKER_SETTINGS["stream_name"].name, Path(settings[source_name]).stem)
        settings[source_name] = prepared
    refuse_one_off(target, settings, outputs, count)
    if target.local:
        code = _run_local(target, outputs, settings, count, cpu, memory, json_out)
    else:
        code = _run_fargate(target, outputs, settings, count, cpu, memory, wait or follow, follow, json_out, gpu)
    raise typer.Exit(code)


def _run_local(t, outputs, settings: dict[str, str], count: int, cpu, memory, json_out: bool) -> int:
    if count != 1:
        raise KinaseError("--count must be 1 with --local", "the local worker is one foreground process")
    if cpu or memory:
        console.warn("--cpu/--memory size Fargate tasks; the local worker ignores them")
    definition = taskdef.current(t, outputs)
    taskdef.require_image(t, outputs, definition, outputs["ContainerName"], "worker")
    base = local_model(taskdef.environment(definition, outputs["ContainerName"]), settings)
    environment = {**t.child_env(), **base, **settings}
    task_id = local_runs.new_task_id()
    console.step(f"local worker {task_id} (log: {local_runs.log_file(task_id)})")
    code = local_runs.run(
        [sys.executable, "-m", "worker"],
        task_id=task_id,
        env=environment,
        cwd=paths.PROJECT_ROOT,
        settings={**base, **settings},
        on_line=lambda line: console.err.print(plain(line), highlight=False, soft_wrap=True),  # diagnostics: stderr
    )
    if json_out:
        jsonout.emit(
            "run-task",
            {
                "local": True,
                "tasks": [{"task_id": task_id, "exit_code": code, "log": str(local_runs.log_file(task_id))}],
                "exit_code": code,
            },
        )
    else:
        console.info(f"worker {task_id} exited with code {code}")
    return code


def _run_fargate(
    t, outputs, settings: dict[str, str], count: int, cpu, memory, wait: bool, follow: bool, json_out: bool, gpu: bool = False
) -> int:
    placement = _gpu_placement(t, outputs) if gpu else None
    definition = taskdef.current(t, outputs, outputs["GpuTaskDefinitionFamily"] if gpu else None)
    name = outputs["ContainerName"]
    image = taskdef.require_image(t, outputs, definition, name, "worker")
    task_cpu = int(cpu or definition.get("cpu") or sum(c.get("cpu", 0) for c in definition["containerDefinitions"]))
    task_memory = int(memory or definition.get("memory") or sum(c.get("memory", 0) for c in definition["containerDefinitions"]))
    problem = None if gpu else cost.invalid_size(task_cpu, task_memory)
    if problem:
        raise KinaseError(
            problem, "see https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size"
        )
    container_override: dict = {"name": name, "environment": [{"name": k, "value": v} for k, v in sorted(settings.items())]}
    overrides: dict = {"containerOverrides": [container_override]}
    if cpu:
        overrides["cpu"] = str(cpu)
        container_override["cpu"] = cpu
    if memory:
        overrides["memory"] = str(memory)
        container_override["memory"] = memory
    ecs = t.client("ecs")
    answer = ecs.run_task(
        cluster=outputs["ClusterName"],
        taskDefinition=definition["taskDefinitionArn"],
        count=count,
        **(
            placement
            or {
                "launchType": "FARGATE",
                "networkConfiguration": {
                    "awsvpcConfiguration": {
                        "subnets": outputs.subnets,
                        "securityGroups": [outputs["SecurityGroupId"]],
                        "assignPublicIp": "ENABLED",  # public subnets, no NAT: the task needs a public IP to reach AWS
                    }
                },
            }
        ),
        overrides=overrides,
        startedBy="kinase",
    )
    if answer.get("failures"):
        reasons = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip() for f in answer["failures"])
        raise KinaseError(f"ECS did not start the task: {reasons}")
    arns = [task["taskArn"] for task in answer["tasks"]]
    estimate = None if gpu else cost.fargate_hourly(task_cpu, task_memory, t.region_name)
    ids = [arn.rsplit("/", 1)[-1] for arn in arns]
    if not json_out:
        console.out.print(
            f"started {len(ids)} task(s) on {outputs['ClusterName']} with {definition['family']}:{definition['revision']} ({image})",
            highlight=False,
            soft_wrap=True,
        )
        for task_id in ids:
            console.out.print(f"  {task_id}", highlight=False)
        priced = estimate.text() if estimate else "on a GPU instance (EC2 on-demand, not in kinase's price table)"
        console.out.print(f"{task_cpu} CPU units, {task_memory} MiB: {priced} per task", highlight=False, soft_wrap=True)
    code = 0
    stopped: list[dict] = []
    if wait:
        try:
            stopped = _wait(t, outputs, definition, arns, follow, json_out)
        except KeyboardInterrupt:
            console.warn(f"stopped waiting; the tasks keep running (`kinase stop-task {' '.join(ids)}{t.hint_flag()}`)")
            raise typer.Exit(130) from None
        code = exit_code(stopped, name)
    if json_out:
        jsonout.emit(
            "run-task",
            {
                "local": False,
                "cluster": outputs["ClusterName"],
                "task_definition_arn": definition["taskDefinitionArn"],
                "image": image,
                "cpu": task_cpu,
                "memory": task_memory,
                "overrides": settings,
                "tasks": [task_summary(task, name) for task in stopped]
                if stopped
                else [{"task_id": i, "task_arn": a} for i, a in zip(ids, arns)],
                "cost_per_task_hour": estimate.as_dict() if estimate else None,
                "gpu": gpu,
                "exit_code": code if wait else None,
            },
        )
    return code


def _gpu_placement(t, outputs) -> dict:
    """RunTask's placement on the GPU capacity provider (bridge network: the instance's public address reaches AWS)."""
    if not outputs.get("GpuTaskDefinitionFamily"):
        raise KinaseError("this environment has no GPU workers", f"deploy them first: `kinase deploy --gpu{t.hint_flag()}`")
    provider = naming.gpu_capacity_provider(t.env)  # the name the stack gives it (infra/stacks/gpu.py)
    return {"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1, "base": 0}]}


def _wait(t, outputs, definition, arns: list[str], follow: bool, json_out: bool) -> list[dict]:
    ecs = t.client("ecs")
    tail = None
    if follow:
        prefix = taskdef.log_stream_prefix(definition, outputs["ContainerName"])
        streams = [f"{prefix}/{arn.rsplit('/', 1)[-1]}" for arn in arns] if prefix else None
        tail = CloudWatchTail(t.client("logs"), outputs["LogGroupName"], since_time("1m"), streams)
    several = len(arns) > 1
    last: dict[str, str] = {}

    def show_logs() -> None:
        for event in tail.poll() if tail else ():
            if json_out:
                jsonout.emit_line(event)
            else:
                where = f"[{event['task'][:8]}] " if several else ""
                console.out.print(f"{where}{event['message']}", markup=False, highlight=False, soft_wrap=True)

    while True:
        tasks = ecs.describe_tasks(cluster=outputs["ClusterName"], tasks=arns)["tasks"]
        if not tasks:
            raise KinaseError(f"ECS no longer knows the tasks {' '.join(arns)}", "it forgets stopped tasks after about an hour")
        for task in tasks:
            task_id = task["taskArn"].rsplit("/", 1)[-1]
            if last.get(task_id) != task.get("lastStatus"):
                last[task_id] = task.get("lastStatus")
                console.info(f"task {task_id}: {task.get('lastStatus')}")
        show_logs()
        if all(task.get("lastStatus") == "STOPPED" for task in tasks):
            show_logs()
            return tasks
        time.sleep(poll_seconds())


@with_target
def stop_task(
    task_ids: Annotated[Optional[list[str]], typer.Argument(metavar="TASK", help="Task ids or ARNs.", show_default=False)] = None,
    all_tasks: Annotated[bool, typer.Option("--all", help="Stop every running task on the stack's cluster.")] = False,
    yes: Yes = False,
    json_out: Json = False,
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
        elif not json_out:
            console.info(f"no running tasks on {cluster}")
    stopping = []
    for task_id in task_ids:
        task = ecs.stop_task(cluster=cluster, task=task_id, reason="stopped by kinase stop-task")["task"]
        stopping.append({"task_id": task["taskArn"].rsplit("/", 1)[-1], "task_arn": task["taskArn"]})
        if not json_out:
            console.out.print(f"stopping {stopping[-1]['task_id']}", highlight=False)
    if json_out:
        jsonout.emit("stop-task", {"cluster": cluster, "stopping": stopping})


def register(app: typer.Typer) -> None:
    app.command("run-task", help=run_task.__doc__, epilog=RUN_EPILOG)(run_task)
    app.command("stop-task", help=stop_task.__doc__, epilog=STOP_EPILOG)(stop_task)

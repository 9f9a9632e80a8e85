"""`kinase run-task` and `kinase stop-task`: worker tasks on Fargate, or a local worker process."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from infra.naming import DEFAULT_ENV
from kinase_cli.options import Env, Json, Local, Profile, Region, Yes, target

IMAGE_ROOT = "/opt/kinase/"  # where the image keeps the worker's models; the repository root locally
MAX_COUNT = 10  # ECS RunTask starts at most 10 tasks per call

RUN_EPILOG = """\
Examples:

  kinase run-task                                  # one task on the stack's stream
  kinase run-task --follow                         # stream its logs; exit with the worker's exit code
  kinase run-task --source s3://bucket/clip.mp4 --wait
  kinase run-task --every 5 --conf 0.4 --count 2 --cpu 2048 --memory 4096
  kinase run-task -e KINASE_CLASSES=person,car -e KINASE_START=EARLIEST
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


def worker_settings(
    stream: str | None,
    source: str | None,
    model: str | None,
    imgsz: int | None,
    conf: float | None,
    every: int | None,
    fps: float | None,
    env_vars: list[str],
    local: bool,
) -> dict[str, str]:
    """The worker environment variables this run overrides (contract in docs/OPERATIONS.md)."""
    from kinase_cli.ui.errors import KinaseError

    if stream and source:
        raise KinaseError("--stream and --source are exclusive", "name a Kinesis Video stream or give a source URI, not both")
    settings: dict[str, str] = {}
    if stream:
        settings.update(KINASE_SOURCE=f"kvs://{stream}", KINASE_STREAM_NAME=stream)
    if source:
        if not local and "://" not in source and Path(source).expanduser().is_file():
            raise KinaseError(
                f"a Fargate task cannot read the local file {source}",
                "upload it to S3 and pass --source s3://BUCKET/KEY, feed it with `kinase stream put`, or use --local",
            )
        settings["KINASE_SOURCE"] = _local_path(source) if local else source
    if model:
        settings["KINASE_MODEL"] = _local_path(model) if local else model
    for key, value in (("KINASE_IMGSZ", imgsz), ("KINASE_CONF", conf), ("KINASE_EVERY", every), ("KINASE_FPS", fps)):
        if value is not None:
            settings[key] = str(value)
    for item in env_vars:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KinaseError(f"--env-var {item!r} is not KEY=VALUE", "e.g. -e KINASE_CLASSES=person,car")
        settings[key.strip()] = value
    return settings


def _local_path(value: str) -> str:
    """A relative file path given to a local worker, made absolute (the worker runs in the repository root)."""
    path = Path(value).expanduser()
    return str(path.resolve()) if "://" not in value and path.exists() else value


def _check_stream(t, name: str, outputs) -> None:
    from kinase_cli.ui.errors import KinaseError

    try:
        t.client("kinesisvideo").describe_stream(StreamName=name)
    except Exception as exc:  # botocore ClientError
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise KinaseError(
                f"stream {name} does not exist",
                f"the stack's stream is {outputs.get('StreamName', '?')}; run without --stream to use it",
            ) from None
        raise


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
    json_out: Json = False,
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = DEFAULT_ENV,
) -> None:
    """Start worker tasks on the stack's Fargate cluster (or, with --local, a local worker process)."""
    from kinase_cli.aws import outputs as stack_outputs

    t = target(profile, region, local, env)
    settings = worker_settings(stream, source, model, imgsz, conf, every, fps, env_vars or [], local)
    outputs = stack_outputs.read(t, required=("storage", "compute"))
    if stream:
        _check_stream(t, stream, outputs)
    if local:
        code = _run_local(t, outputs, settings, count, cpu, memory, json_out)
    else:
        code = _run_fargate(t, outputs, settings, count, cpu, memory, wait or follow, follow, json_out)
    raise typer.Exit(code)


def _run_local(t, outputs, settings: dict[str, str], count: int, cpu, memory, json_out: bool) -> int:
    from kinase_cli import paths
    from kinase_cli.aws import taskdef
    from kinase_cli.local import runs as local_runs
    from kinase_cli.ui import console, jsonout
    from kinase_cli.ui.errors import KinaseError

    if count != 1:
        raise KinaseError("--count must be 1 with --local", "the local worker is one foreground process")
    if cpu or memory:
        console.warn("--cpu/--memory size Fargate tasks; the local worker ignores them")
    definition = taskdef.current(t, outputs)
    base = taskdef.environment(definition, outputs["ContainerName"])
    model = settings.get("KINASE_MODEL") or base.get("KINASE_MODEL", "")
    if model.startswith(IMAGE_ROOT):
        here = paths.PROJECT_ROOT / model[len(IMAGE_ROOT) :]
        if here.exists():
            base["KINASE_MODEL"] = str(here)
        elif "KINASE_MODEL" not in settings:
            raise KinaseError(f"the task definition's model {model} is only inside the image", "pass --model PATH for the local worker")
    environment = {**t.child_env(), **base, **settings}
    task_id = local_runs.new_task_id()
    console.step(f"local worker {task_id} (log: {local_runs.log_file(task_id)})")
    show = console.err.print if json_out else console.out.print
    code = local_runs.run(
        [sys.executable, "-m", "worker"],
        task_id=task_id,
        env=environment,
        cwd=paths.PROJECT_ROOT,
        settings={**base, **settings},
        on_line=lambda line: show(line, markup=False, highlight=False, soft_wrap=True),
    )
    if json_out:
        jsonout.emit(
            "run-task", {"local": True, "tasks": [{"taskId": task_id, "exitCode": code, "log": str(local_runs.log_file(task_id))}]}
        )
    else:
        console.info(f"worker {task_id} exited with code {code}")
    return code


def _run_fargate(t, outputs, settings: dict[str, str], count: int, cpu, memory, wait: bool, follow: bool, json_out: bool) -> int:
    from kinase_cli.aws import cost, taskdef
    from kinase_cli.ui import console, jsonout
    from kinase_cli.ui.errors import KinaseError

    definition = taskdef.current(t, outputs)
    name = outputs["ContainerName"]
    image = taskdef.container(definition, name)["image"]
    _check_image(t, outputs, image)
    task_cpu = int(cpu or definition.get("cpu") or sum(c.get("cpu", 0) for c in definition["containerDefinitions"]))
    task_memory = int(memory or definition.get("memory") or sum(c.get("memory", 0) for c in definition["containerDefinitions"]))
    problem = cost.invalid_size(task_cpu, task_memory)
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
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": outputs.subnets,
                "securityGroups": [outputs["SecurityGroupId"]],
                "assignPublicIp": "ENABLED",  # public subnets, no NAT: the task needs a public IP to reach AWS
            }
        },
        overrides=overrides,
        startedBy="kinase",
    )
    if answer.get("failures"):
        reasons = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip() for f in answer["failures"])
        raise KinaseError(f"ECS did not start the task: {reasons}")
    arns = [task["taskArn"] for task in answer["tasks"]]
    estimate = cost.fargate_hourly(task_cpu, task_memory, t.region_name)
    ids = [arn.rsplit("/", 1)[-1] for arn in arns]
    if not json_out:
        console.out.print(
            f"started {len(ids)} task(s) on {outputs['ClusterName']} with {definition['family']}:{definition['revision']} ({image})",
            highlight=False,
            soft_wrap=True,
        )
        for task_id in ids:
            console.out.print(f"  {task_id}", highlight=False)
        console.out.print(f"{task_cpu} CPU units, {task_memory} MiB: {estimate.text()} per task", highlight=False, soft_wrap=True)
    code = 0
    stopped: list[dict] = []
    if wait:
        try:
            stopped = _wait(t, outputs, definition, arns, follow, json_out)
        except KeyboardInterrupt:
            console.warn(f"stopped waiting; the tasks keep running (`kinase stop-task {' '.join(ids)}{t.hint_flag()}`)")
            raise typer.Exit(130) from None
        code = _exit_code(stopped, name)
    if json_out:
        jsonout.emit(
            "run-task",
            {
                "local": False,
                "cluster": outputs["ClusterName"],
                "taskDefinitionArn": definition["taskDefinitionArn"],
                "image": image,
                "cpu": task_cpu,
                "memory": task_memory,
                "overrides": settings,
                "tasks": [task_summary(task, name) for task in stopped]
                if stopped
                else [{"taskId": i, "taskArn": a} for i, a in zip(ids, arns)],
                "costPerTaskHour": estimate.as_dict(),
                "exitCode": code if wait else None,
            },
        )
    return code


def _check_image(t, outputs, image: str) -> None:
    """Fail before starting a task that could only die pulling an image that is not in the repository."""
    from kinase_cli.aws.taskdef import ImageRef
    from kinase_cli.ui.errors import KinaseError

    ref = ImageRef.parse(image)
    if ref.name != outputs.get("RepositoryName", ref.name):
        return
    ecr = t.client("ecr")
    try:
        ecr.describe_images(repositoryName=ref.name, imageIds=[ref.ecr_id()])
    except Exception as exc:  # botocore ClientError
        if getattr(exc, "response", {}).get("Error", {}).get("Code") != "ImageNotFoundException":
            raise
        hint = f"run `kinase push-image{t.hint_flag()}`"
        if not ecr.list_images(repositoryName=ref.name, maxResults=1)["imageIds"]:
            raise KinaseError(f"no worker image has been pushed to {ref.name} yet", hint) from None
        raise KinaseError(f"the task definition's image {ref.digest or ref.tag} is not in {ref.name}", hint) from None


def _wait(t, outputs, definition, arns: list[str], follow: bool, json_out: bool) -> list[dict]:
    from kinase_cli.aws import taskdef
    from kinase_cli.aws.log_tail import CloudWatchTail, poll_seconds, since_time
    from kinase_cli.ui import console, jsonout
    from kinase_cli.ui.errors import KinaseError

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


def when(value) -> str | None:
    """An AWS timestamp as ISO 8601 UTC (`...Z`); strings pass through."""
    from datetime import datetime, timezone

    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value


def task_summary(task: dict, container_name: str) -> dict:
    containers = [c for c in task.get("containers", []) if c.get("name") == container_name] or task.get("containers", [])
    main = containers[0] if containers else {}
    return {
        "taskId": task["taskArn"].rsplit("/", 1)[-1],
        "taskArn": task["taskArn"],
        "lastStatus": task.get("lastStatus"),
        "exitCode": main.get("exitCode"),
        "stopCode": task.get("stopCode"),
        "stoppedReason": task.get("stoppedReason") or main.get("reason"),
        "cpu": task.get("cpu"),
        "memory": task.get("memory"),
        "startedAt": when(task.get("startedAt")),
        "stoppedAt": when(task.get("stoppedAt")),
    }


def _exit_code(tasks: list[dict], container_name: str) -> int:
    """The first non-zero worker exit code; 1 for a task whose worker never exited (e.g. the image did not pull)."""
    from kinase_cli.ui import console

    code = 0
    for task in tasks:
        summary = task_summary(task, container_name)
        reason = f" ({summary['stoppedReason']})" if summary["stoppedReason"] else ""
        if summary["exitCode"] is None:
            console.err.print(f"task {summary['taskId']} stopped without a worker exit code{reason}", style="red", highlight=False)
            code = code or 1
        else:
            console.info(f"task {summary['taskId']} stopped: exit code {summary['exitCode']}{reason}")
            code = code or int(summary["exitCode"])
    return code


def stop_task(
    task_ids: Annotated[Optional[list[str]], typer.Argument(help="Task ids or ARNs.", show_default=False)] = None,
    all_tasks: Annotated[bool, typer.Option("--all", help="Stop every running task on the stack's cluster.")] = False,
    yes: Yes = False,
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = DEFAULT_ENV,
) -> None:
    """Stop worker tasks (the worker gets SIGTERM, flushes, checkpoints and exits within 30 s)."""
    from kinase_cli.aws import outputs as stack_outputs
    from kinase_cli.ui import console
    from kinase_cli.ui.errors import KinaseError

    t = target(profile, region, local, env)
    if local:
        raise KinaseError("local workers run in the foreground of `kinase run-task --local`", "stop one with Ctrl-C in its terminal")
    if bool(task_ids) == all_tasks:
        raise KinaseError("give task ids or --all", "e.g. `kinase stop-task --all -y`")
    outputs = stack_outputs.read(t, required=("compute",))
    ecs = t.client("ecs")
    cluster = outputs["ClusterName"]
    if all_tasks:
        pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING")
        task_ids = [arn for page in pages for arn in page["taskArns"]]
        if not task_ids:
            console.info(f"no running tasks on {cluster}")
            return
        if not yes and not typer.confirm(f"stop {len(task_ids)} task(s) on {cluster}?", err=True):
            raise typer.Exit(1)
    for task_id in task_ids:
        task = ecs.stop_task(cluster=cluster, task=task_id, reason="stopped by kinase stop-task")["task"]
        console.out.print(f"stopping {task['taskArn'].rsplit('/', 1)[-1]}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("run-task", help=run_task.__doc__, epilog=RUN_EPILOG)(run_task)
    app.command("stop-task", help=stop_task.__doc__, epilog=STOP_EPILOG)(stop_task)

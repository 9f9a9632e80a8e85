"""`kinase run-task`'s runner: checks what the run reads, then starts the worker as Fargate tasks (or a local
process) and waits for them. The command parses the flags and prints; everything it shows comes back from here."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra import naming
from kinase_cli import paths
from kinase_cli.aws import cost, taskdef
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws.log_tail import CloudWatchTail, poll_seconds, since_time
from kinase_cli.aws.outputs import StackOutputs
from kinase_cli.aws.target import Target
from kinase_cli.local import runs as local_runs
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows import inputs, worker_env
from kinase_cli.workflows.fleet import refuse_one_off
from worker.retry import error_code
from worker.settings import BY_FIELD as WORKER_SETTINGS


def prepare(target: Target, overrides: dict[str, str], stream: str | None, count: int) -> StackOutputs:
    """Before anything starts: the stack's outputs, the stream named exists, a local `--source` file is uploaded
    (`overrides` then names the object), and no fleet worker reads the stream; the stack's outputs."""
    outputs = stack_outputs.read(target, required=("storage", "compute"))
    if stream:
        _check_stream(target, stream, outputs)
    source_name = WORKER_SETTINGS["source"].name
    if overrides.get(source_name):
        prepared = inputs.prepare(target, outputs, overrides[source_name])
        if prepared != overrides[source_name]:  # uploaded: messages and keys keep the file's own name
            overrides.setdefault(WORKER_SETTINGS["stream_name"].name, Path(overrides[source_name]).stem)
        overrides[source_name] = prepared
    refuse_one_off(target, overrides, outputs, count)
    return outputs


def _check_stream(target: Target, name: str, outputs) -> None:
    try:
        target.client("kinesisvideo").describe_stream(StreamName=name)
    except Exception as exc:  # botocore ClientError
        if error_code(exc) == "ResourceNotFoundException":
            raise KinaseError(
                f"stream {name} does not exist",
                f"the stack's stream is {outputs.get('StreamName', '?')}; run without --stream to use it",
            ) from None
        raise


def run_local(target: Target, outputs, overrides: dict[str, str], on_line: Callable[[str], None]) -> dict:
    """The worker as a foreground process with the environment the task definition gives the container, once
    its image is found as ECS would; {task_id, exit_code, log}."""
    definition = taskdef.current(target, outputs)
    taskdef.require_image(target, outputs, definition, outputs["ContainerName"], "worker")
    settings = worker_env.local_settings(definition, outputs["ContainerName"], overrides)
    task_id = local_runs.new_task_id()
    console.step(f"local worker {task_id} (log: {local_runs.log_file(task_id)})")
    code = local_runs.run(
        [sys.executable, "-m", "worker"],
        task_id=task_id,
        env={**target.child_env(), **settings},
        cwd=paths.PROJECT_ROOT,
        settings=settings,
        on_line=on_line,
    )
    return {"task_id": task_id, "exit_code": code, "log": str(local_runs.log_file(task_id))}


@dataclass(frozen=True)
class Started:
    """Fargate tasks `start` started, and what they run."""

    definition: dict
    container: str
    image: str
    cpu: int
    memory: int
    arns: list[str]
    estimate: cost.FargateHourly | None  # None on the GPU instances: not in kinase's price table

    @property
    def ids(self) -> list[str]:
        return [arn.rsplit("/", 1)[-1] for arn in self.arns]


def start(target: Target, outputs, overrides: dict[str, str], count: int, cpu: int | None, memory: int | None, gpu: bool) -> Started:
    """RunTask on the newest revision of the stack's (or the GPU) task definition, with the run's overrides."""
    placement = gpu_placement(target, outputs) if gpu else None
    definition = taskdef.current(target, outputs, outputs["GpuTaskDefinitionFamily"] if gpu else None)
    name = outputs["ContainerName"]
    image = taskdef.require_image(target, outputs, definition, name, "worker")
    task_cpu = int(cpu or definition.get("cpu") or sum(c.get("cpu", 0) for c in definition["containerDefinitions"]))
    task_memory = int(memory or definition.get("memory") or sum(c.get("memory", 0) for c in definition["containerDefinitions"]))
    problem = None if gpu else cost.invalid_size(task_cpu, task_memory)
    if problem:
        raise KinaseError(
            problem, "see https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size"
        )
    answer = target.client("ecs").run_task(
        cluster=outputs["ClusterName"],
        taskDefinition=definition["taskDefinitionArn"],
        count=count,
        **(placement or _fargate_placement(outputs)),
        overrides=_task_overrides(name, overrides, cpu, memory),
        startedBy="kinase",
    )
    if answer.get("failures"):
        reasons = "; ".join(f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip() for f in answer["failures"])
        raise KinaseError(f"ECS did not start the task: {reasons}")
    estimate = None if gpu else cost.fargate_hourly(task_cpu, task_memory, target.region_name)
    return Started(definition, name, image, task_cpu, task_memory, [task["taskArn"] for task in answer["tasks"]], estimate)


def _task_overrides(container: str, overrides: dict[str, str], cpu: int | None, memory: int | None) -> dict:
    container_override: dict = {"name": container, "environment": [{"name": k, "value": v} for k, v in sorted(overrides.items())]}
    task: dict = {"containerOverrides": [container_override]}
    if cpu:
        task["cpu"] = str(cpu)
        container_override["cpu"] = cpu
    if memory:
        task["memory"] = str(memory)
        container_override["memory"] = memory
    return task


def _fargate_placement(outputs) -> dict:
    return {
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": outputs.subnets,
                "securityGroups": [outputs["SecurityGroupId"]],
                "assignPublicIp": "ENABLED",  # public subnets, no NAT: the task needs a public IP to reach AWS
            }
        },
    }


def gpu_placement(target: Target, outputs) -> dict:
    """RunTask's placement on the GPU capacity provider (bridge network: the instance's public address reaches AWS)."""
    if not outputs.get("GpuTaskDefinitionFamily"):
        raise KinaseError("this environment has no GPU workers", f"deploy them first: `kinase deploy --gpu{target.hint_flag()}`")
    provider = naming.gpu_capacity_provider(target.env)  # the name the stack gives it (infra/stacks/gpu.py)
    return {"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1, "base": 0}]}


def wait(target: Target, outputs, started: Started, on_log: Callable[[dict], None] | None) -> list[dict]:
    """Until every task has stopped (DescribeTasks); each status change is reported on stderr, and with `on_log`
    (`--follow`) the tasks' log events are passed to it as they come. The stopped tasks."""
    ecs = target.client("ecs")
    tail = None
    if on_log:
        prefix = taskdef.log_stream_prefix(started.definition, started.container)
        streams = [f"{prefix}/{task_id}" for task_id in started.ids] if prefix else None
        tail = CloudWatchTail(target.client("logs"), outputs["LogGroupName"], since_time("1m"), streams)
    last: dict[str, str] = {}

    def show_logs() -> None:
        for event in tail.poll() if tail else ():
            on_log(event)

    while True:
        tasks = ecs.describe_tasks(cluster=outputs["ClusterName"], tasks=started.arns)["tasks"]
        if not tasks:
            raise KinaseError(f"ECS no longer knows the tasks {' '.join(started.arns)}", "it forgets stopped tasks after about an hour")
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

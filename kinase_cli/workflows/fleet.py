"""The worker fleet: workers that share the environment's streams through one lease per stream.

On AWS the fleet is one of the compute stack's two ECS services: the Fargate one, or with
`kinase deploy --gpu` the one on the GPU instances (`up --gpu`). `up` and `scale` set its desired
count and autoscaling limits (minimum = the count asked for); `up` also stops the other service
and leaves it no room to scale, since both track the same metric (infra/stacks/fleet.py), so the
workers move over by lease hand-over. `scale` acts on the service that is up, `down` stops both. With `--local` the
workers are `python -m worker.fleet` processes against the local stack, started in the
background and recorded (pid and command line, like the local stack's servers) in
`<KINASE_HOME>/local/fleet-<env>.json`; only processes whose pid AND command line match a record
are ever signalled. `status` joins the workers with the lease table: which streams each holds,
and each stream's owner, lag, fps and checkpoint.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

from infra import naming
from kinase_cli import paths
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws import taskdef
from kinase_cli.aws.target import Target
from kinase_cli.local import lock
from kinase_cli.runners import proc
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows import streams as streams_workflow
from kinase_cli.workflows import worker_env
from worker import settings as worker_settings
from worker.contract import iso
from worker.sources.kinds import kvs_source

STOP_TIMEOUT_S = 60  # a worker flushes and checkpoints every stream, then releases its leases (Fargate allows 30 s)
FLEET_ENTRY = "worker.fleet"
READY_TIMEOUT_S = 300  # a new worker loads and warms its model before its first lease cycle
TAKE_TIMEOUT_S = 120  # released leases are taken at the new workers' next cycle (a third of the lease duration)


def state_file(env: str) -> Path:
    return paths.local_dir() / f"fleet-{env}.json"


def _log_dir() -> Path:
    return paths.local_dir() / "fleet-logs"  # not worker-logs: `kinase logs --local` reads those as timestamped run logs


def _load_state(env: str) -> dict:
    """`{"workers": [...], "up": {what fleet up was given}}`; a damaged file is reported and rebuilt by `_recover`."""
    try:
        state = json.loads(state_file(env).read_text())
        if isinstance(state, dict) and isinstance(state.get("workers"), list):
            return state
    except FileNotFoundError:
        return {"workers": []}
    except ValueError:
        pass
    return _recover(env)


def _load(env: str) -> list[dict]:
    return _load_state(env)["workers"]


def _save(env: str, workers: list[dict], up_settings: dict | None = None) -> None:
    """Record the workers (and what `fleet up` was given, kept from the record when None)."""
    path = state_file(env)
    if up_settings is None:
        try:
            up_settings = json.loads(path.read_text()).get("up")
        except (FileNotFoundError, ValueError, AttributeError):
            up_settings = None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"workers": workers, "up": up_settings}, indent=2))
    tmp.replace(path)


def _recover(env: str) -> dict:
    """The fleet of `env` rebuilt from the workers that really run, and saved: a `python -m worker.fleet`
    whose output goes to one of this environment's fleet logs here. What `fleet up` was given is lost:
    a later `fleet roll` starts its workers with the task definition's settings only."""
    from kinase_cli.local.stack import damaged, environ, processes_logging_to

    argv = [sys.executable, "-m", FLEET_ENTRY]
    name = re.compile(rf"fleet-{re.escape(env)}-[0-9a-f]{{12}}\.log")
    workers = [
        {
            "pid": pid,
            "argv": argv,
            "log": str(log),
            "worker_id": f"{socket.gethostname()}-{pid}",
            "started_at": None,
            "environment": environ(pid),
            "task_definition": None,
        }
        for pid, found, log in processes_logging_to(_log_dir())
        if found == argv and name.fullmatch(log.name)
    ]
    damaged(state_file(env), ", ".join(f"fleet worker pid {w['pid']}" for w in workers) or "no worker")
    _save(env, workers, {})
    return {"workers": workers, "up": {}}


def _alive(record: dict) -> bool:
    from kinase_cli.local.stack import cmdline

    return cmdline(record["pid"]) == " ".join(record["argv"])


def _running(env: str) -> list[dict]:
    """The recorded local workers still running; read only, so `status` never races a command that records."""
    return [w for w in _load(env) if _alive(w)]


def _local_workers(env: str) -> list[dict]:
    """The recorded local workers still running, dead ones dropped from the record (under the fleet's lock)."""
    workers = _running(env)
    _save(env, workers)
    return workers


def _what(env: str) -> str:
    return f"environment {env}'s fleet"


def _changes_local_fleet(function):
    """`function(target, ...)` changes the target's fleet: on the local stack it runs holding that fleet's lock
    (kinase_cli/local/lock.py), so two commands never both start a fleet. On AWS, ECS orders the updates."""

    @functools.wraps(function)
    def locked(target: Target, *args, **kwargs):
        if not target.local:
            return function(target, *args, **kwargs)
        with lock.exclusive(lock.fleet(target.env), _what(target.env)):
            return function(target, *args, **kwargs)

    return locked


def _fleet_environment(target: Target, definition: dict, overrides: dict[str, str]) -> dict[str, str]:
    return {**target.child_env(), **worker_env.local_settings(definition, naming.FLEET_CONTAINER_NAME, overrides)}


def _start_local(target: Target, environment: dict[str, str], task_definition: str | None) -> dict:
    log_dir = _log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", FLEET_ENTRY]
    log = log_dir / f"fleet-{target.env}-{uuid.uuid4().hex[:12]}.log"
    child = proc.start_background(argv, log_file=log, env={**environment, "PYTHONUNBUFFERED": "1"}, cwd=paths.PROJECT_ROOT)
    return {
        "pid": child.pid,
        "argv": argv,
        "log": str(log),
        "worker_id": f"{socket.gethostname()}-{child.pid}",
        "started_at": iso(time.time()),
        "environment": environment,
        "task_definition": task_definition,  # the revision whose settings it runs
    }


def _stop_local(records: list[dict], timeout: float = STOP_TIMEOUT_S) -> list[dict]:
    """SIGTERM (as ECS stops a task): each worker stops its streams, checkpoints, releases its leases and exits."""
    for record in records:
        if _alive(record):
            os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(r) for r in records):
        time.sleep(0.2)
    stuck = [r for r in records if _alive(r)]
    for record in stuck:
        os.kill(record["pid"], signal.SIGKILL)
    return [{"pid": r["pid"], "worker_id": r["worker_id"], "killed": r in stuck} for r in records]


def _services(outputs) -> dict[bool, str]:
    """The fleet's ECS services by placement: False the Fargate one, True the GPU one (only with `deploy --gpu`)."""
    found = {False: outputs["FleetServiceName"]}
    if outputs.get("GpuFleetServiceName"):
        found[True] = outputs["GpuFleetServiceName"]
    return found


def _max_workers(gpu: bool) -> int:
    return naming.GPU_MAX_WORKERS if gpu else naming.FLEET_MAX_WORKERS


def _fleet_that_is_up(target: Target, outputs) -> tuple[bool, str, dict]:
    """(on GPU instances, service, its autoscaling limits): the GPU service when `up --gpu` gave it room to
    scale, otherwise the Fargate one (also after `down`, which leaves both at 0..0)."""
    cluster, services = outputs["ClusterName"], _services(outputs)
    if True in services:
        limits = _limits(target, cluster, services[True])
        if limits["max"]:
            return True, services[True], limits
    return False, services[False], _limits(target, cluster, services[False])


def _set_limits(target: Target, cluster: str, service: str, minimum: int, maximum: int) -> None:
    target.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{cluster}/{service}",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=minimum,
        MaxCapacity=maximum,
    )


def _limits(target: Target, cluster: str, service: str) -> dict:
    found = target.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[f"service/{cluster}/{service}"], ScalableDimension="ecs:service:DesiredCount"
    )["ScalableTargets"]
    return {"min": found[0]["MinCapacity"], "max": found[0]["MaxCapacity"]} if found else {"min": None, "max": None}


def _with_settings(target: Target, family: str, overrides: dict[str, str]) -> str:
    """A revision of the fleet's task definition `family` whose container environment has `overrides`; its ARN."""
    ecs = target.client("ecs")
    definition = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    taskdef.container(definition, naming.FLEET_CONTAINER_NAME)
    request = {k: definition[k] for k in taskdef.REGISTER_KEYS if definition.get(k) not in (None, [], {})}
    containers = []
    for c in definition["containerDefinitions"]:
        if c["name"] == naming.FLEET_CONTAINER_NAME:
            env = [e for e in c.get("environment", []) if e["name"] not in overrides]
            c = {**c, "environment": env + [{"name": k, "value": v} for k, v in overrides.items()]}
        containers.append(c)
    request["containerDefinitions"] = containers
    return ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]


@_changes_local_fleet
def up(target: Target, workers: int, overrides: dict[str, str], gpu: bool = False) -> dict:
    """Start the workers with the settings `overrides` (workflows/worker_env.py; on AWS in a new revision of the
    fleet's task definition); every stream named with the environment's prefix gets a lease first (the
    stack's own stream, and any created outside `kinase stream create`)."""
    outputs = stack_outputs.read(target, required=("storage", "compute"))
    services = _services(outputs)
    if gpu and not target.local and True not in services:
        raise KinaseError("this environment has no GPU workers", f"deploy them first: `kinase deploy --gpu{target.hint_flag()}`")
    if gpu and not target.local and workers > naming.GPU_MAX_WORKERS:  # ECS would leave the extra tasks unplaced
        raise KinaseError(
            f"--workers {workers}: the GPU workers' Auto Scaling group runs at most {naming.GPU_MAX_WORKERS} workers, one per instance",
            f"--workers {naming.GPU_MAX_WORKERS} or fewer; each GPU worker reads up to {naming.FLEET_MAX_STREAMS_PER_WORKER} streams",
        )
    # The revision the workers start, refused (before any lease is written) when its image was never pushed.
    family = naming.gpu_fleet_family(target.env) if gpu and not target.local else naming.fleet_family(target.env)
    definition = taskdef.current(target, outputs, family)
    taskdef.require_image(target, outputs, definition, naming.FLEET_CONTAINER_NAME, "fleet")
    streams_workflow.lease_prefixed(target)
    if target.local:
        running = _local_workers(target.env)
        if running:
            raise KinaseError(
                f"the local fleet of {target.env} runs already ({len(running)} workers)",
                "use `kinase fleet scale N --local`, or `kinase fleet roll --local` to move it to the newest revision",
            )
        environment = _fleet_environment(target, definition, overrides)
        started = [_start_local(target, environment, definition["taskDefinitionArn"]) for _ in range(workers)]
        _save(target.env, started, {"overrides": overrides})
        return {"local": True, "gpu": gpu, "workers": [_public(w) for w in started]}
    cluster, service = outputs["ClusterName"], services[gpu]
    # The newest revision (push-image pins it), not the one the service was created with.
    request = {"cluster": cluster, "service": service, "desiredCount": workers, "taskDefinition": definition["taskDefinitionArn"]}
    if overrides:
        request["taskDefinition"] = _with_settings(target, family, overrides)
    ecs = target.client("ecs")
    for other in [name for placement, name in services.items() if placement != gpu]:
        _set_limits(target, cluster, other, 0, 0)
        ecs.update_service(cluster=cluster, service=other, desiredCount=0)
    _set_limits(target, cluster, service, workers, max(workers, _max_workers(gpu)))
    answer = ecs.update_service(**request)["service"]
    return {
        "local": False,
        "gpu": gpu,
        "service": service,
        "desired_count": answer["desiredCount"],
        "task_definition": answer["taskDefinition"],
    }


@_changes_local_fleet
def scale(target: Target, workers: int) -> dict:
    outputs = stack_outputs.read(target, required=("storage", "compute"))
    if target.local:
        running = _local_workers(target.env)
        if not running:
            raise KinaseError(f"the local fleet of {target.env} is not running", "start it with `kinase fleet up --local`")
        if workers > len(running):
            environment = running[0]["environment"]
            running += [_start_local(target, environment, running[0].get("task_definition")) for _ in range(workers - len(running))]
            stopped = []
        else:
            stopped = _stop_local(running[workers:])
            running = running[:workers]
        _save(target.env, running)
        return {"local": True, "workers": [_public(w) for w in running], "stopped": stopped}
    gpu, service, limits = _fleet_that_is_up(target, outputs)
    cluster = outputs["ClusterName"]
    if gpu and workers > naming.GPU_MAX_WORKERS:
        raise KinaseError(
            f"the fleet runs on the GPU workers, at most {naming.GPU_MAX_WORKERS} (one per GPU instance)",
            f"`kinase fleet scale {naming.GPU_MAX_WORKERS}`, or move it to Fargate: `kinase fleet up --workers {workers}`",
        )
    _set_limits(target, cluster, service, workers, max(workers, limits["max"] or _max_workers(gpu)))
    answer = target.client("ecs").update_service(cluster=cluster, service=service, desiredCount=workers)["service"]
    return {"local": False, "gpu": gpu, "service": service, "desired_count": answer["desiredCount"]}


@_changes_local_fleet
def down(target: Target) -> dict:
    outputs = stack_outputs.read(target, required=("storage", "compute"))
    if target.local:
        stopped = _stop_local(_local_workers(target.env))
        _save(target.env, [])
        return {"local": True, "stopped": stopped}
    cluster, ecs, services = outputs["ClusterName"], target.client("ecs"), list(_services(outputs).values())
    for service in services:
        _set_limits(target, cluster, service, 0, 0)
        ecs.update_service(cluster=cluster, service=service, desiredCount=0)
    return {"local": False, "service": outputs["FleetServiceName"], "services": services, "desired_count": 0}


@_changes_local_fleet
def roll(target: Target, outputs) -> dict:
    """Move the running fleet to its task family's newest revision (a new image, new settings) without a gap.

    On AWS: UpdateService with that revision on the fleet service that is up (Fargate or GPU). Its
    deployment rules (minimum healthy 100 %, maximum 200 %, infra/stacks/fleet.py) make ECS start the
    new tasks first; they take leases handed over to them, and the old tasks, stopped with SIGTERM,
    checkpoint and release theirs, which the new ones take. Locally the same, step by step: as many new
    workers as run, on the new revision's settings; once each is ready, SIGTERM to the old ones
    (checkpoint, release); then wait until the leases they held are held by the new ones. Frames put
    meanwhile wait in the stream and are read from the released checkpoints: none is lost or read twice.
    `rolled` is False when the fleet runs that revision already or no worker runs.
    """
    definition = taskdef.current(target, outputs, naming.fleet_family(target.env))
    if target.local:
        return _roll_local(target, outputs, definition)
    gpu, service, _ = _fleet_that_is_up(target, outputs)
    if gpu:
        definition = taskdef.current(target, outputs, naming.gpu_fleet_family(target.env))
    newest, cluster, ecs = definition["taskDefinitionArn"], outputs["ClusterName"], target.client("ecs")
    (described,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
    result = {"local": False, "gpu": gpu, "service": service, "task_definition": newest, "rolled": False}
    result |= {"previous_task_definition": described["taskDefinition"], "desired_count": described["desiredCount"]}
    if described["taskDefinition"] == newest:
        return result
    taskdef.require_image(target, outputs, definition, naming.FLEET_CONTAINER_NAME, "fleet")
    answer = ecs.update_service(cluster=cluster, service=service, taskDefinition=newest)["service"]
    return {**result, "rolled": True, "desired_count": answer["desiredCount"]}


def _roll_local(target: Target, outputs, definition: dict) -> dict:
    state = _load_state(target.env)
    old = [w for w in state["workers"] if _alive(w)]
    newest = definition["taskDefinitionArn"]
    previous = sorted({w.get("task_definition") or "unknown" for w in old})
    result = {"local": True, "task_definition": newest, "previous_task_definitions": previous, "rolled": False, "stopped": []}
    if not old or previous == [newest]:
        _save(target.env, old)
        return {**result, "workers": [_public(w) for w in old], "untaken": []}
    taskdef.require_image(target, outputs, definition, naming.FLEET_CONTAINER_NAME, "fleet")
    environment = _fleet_environment(target, definition, (state.get("up") or {}).get("overrides") or {})
    new: list[dict] = []
    try:
        for _ in old:
            new.append(_start_local(target, environment, newest))
            _save(target.env, old + new)
        _wait_ready(new)
    except BaseException:
        _stop_local(new)
        _save(target.env, old)
        raise
    table = streams_workflow.lease_table(target)
    leaving = {w["worker_id"] for w in old}
    handed = sorted(lease.stream for lease in table.scan() if lease.owner in leaving) if table else []
    stopped = _stop_local(old)
    _save(target.env, new)
    untaken = _wait_taken(table, handed, {w["worker_id"] for w in new}) if table else []
    return {**result, "rolled": True, "workers": [_public(w) for w in new], "stopped": stopped, "untaken": untaken}


def _wait_ready(records: list[dict], timeout: float = READY_TIMEOUT_S) -> None:
    """Until each new worker has its detector warm and starts its lease cycle: it logs
    `fleet worker <id>: leases in ...` (worker/fleet/main.py main()); one that exits first is an error."""
    waiting = list(records)
    deadline = time.monotonic() + timeout
    while waiting:
        record = waiting[0]
        if f"fleet worker {record['worker_id']}: leases in" in Path(record["log"]).read_text(errors="replace"):
            waiting.pop(0)
            continue
        if not _alive(record) or time.monotonic() > deadline:
            why = "exited" if not _alive(record) else f"was not ready within {timeout:.0f}s"
            raise KinaseError(f"new fleet worker pid {record['pid']} {why}; the fleet stays on its revision", f"see {record['log']}")
        time.sleep(0.2)


def _wait_taken(table, streams: list[str], takers: set[str], timeout: float = TAKE_TIMEOUT_S) -> list[str]:
    """Until the new workers hold the streams the old ones released; those still untaken at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        owners = {lease.stream: lease.owner for lease in table.scan()}
        untaken = [s for s in streams if s in owners and owners[s] not in takers]
        if not untaken or time.monotonic() > deadline:
            return untaken
        time.sleep(0.5)


def stop_local_fleet(env: str) -> list[str]:
    """Stop environment `env`'s local fleet workers (they checkpoint and release their leases) and forget them."""
    with lock.exclusive(lock.fleet(env), _what(env)):
        stopped = [f"fleet worker {w['worker_id']} (pid {w['pid']})" for w in _stop_local(_local_workers(env))]
        state_file(env).unlink(missing_ok=True)
    return stopped


def stop_every_local_fleet() -> list[str]:
    """`kinase local down`: the local fleets' workers stop first (they release their leases while the stack still answers)."""
    return [w for path in sorted(paths.local_dir().glob("fleet-*.json")) for w in stop_local_fleet(path.stem[len("fleet-") :])]


def _public(record: dict) -> dict:
    return {**{k: record[k] for k in ("pid", "worker_id", "log", "started_at")}, "task_definition": record.get("task_definition")}


def status(target: Target) -> dict:
    outputs = stack_outputs.read(target, required=("storage", "compute"))
    streams = streams_workflow.listing(target)
    held: dict[str, list[str]] = {}
    for s in streams:
        if s["owner"]:
            held.setdefault(s["owner"], []).append(s["name"])
    if target.local:
        workers = [{**_public(w), "streams": sorted(held.pop(w["worker_id"], []))} for w in _running(target.env)]
        scaling = None
    else:
        gpu, service, limits = _fleet_that_is_up(target, outputs)
        cluster, ecs = outputs["ClusterName"], target.client("ecs")
        described = ecs.describe_services(cluster=cluster, services=[service])["services"]
        arns = ecs.list_tasks(cluster=cluster, serviceName=service)["taskArns"]
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
        workers = []
        for task in tasks:
            host = _task_host(task)
            owner = next((o for o in held if host and o.startswith(host + "-")), None)
            workers.append(
                {
                    "task_id": task["taskArn"].rsplit("/", 1)[-1],
                    "status": task.get("lastStatus"),
                    "worker_id": owner,
                    "task_definition": task.get("taskDefinitionArn"),  # old and new ones side by side during a deployment
                }
            )
            workers[-1]["streams"] = sorted(held.pop(owner, [])) if owner else []
        service_info = described[0] if described else {}
        scaling = {
            "service": service,
            "gpu": gpu,
            "desired_count": service_info.get("desiredCount"),
            "running_count": service_info.get("runningCount"),
            **limits,
        }
    # Owners not among the workers listed: workers being replaced, or ones whose lease has not expired yet.
    workers += [{"worker_id": owner, "streams": sorted(names), "listed": False} for owner, names in sorted(held.items())]
    return {
        "local": target.local,
        "workers": workers,
        "streams": [
            {k: s[k] for k in ("name", "owner", "lag_ms", "fps", "stats_at", "checkpoint_fragment", "checkpoint_at", "adopted", "counts")}
            for s in streams
        ],
        "scaling": scaling,
    }


def scaling_text(scaling: dict) -> str:
    """The AWS fleet's service in one line (`fleet status`, `status`); the service name is shown through visible()."""
    from kinase_cli.ui.text import visible

    where = " (GPU instances)" if scaling.get("gpu") else ""
    return (
        f"service {visible(scaling['service'])}{where}: desired {scaling['desired_count']}, running {scaling['running_count']}, "
        f"autoscaling {scaling['min']}..{scaling['max']}"
    )


def _task_host(task: dict) -> str | None:
    """The hostname that begins a fleet worker's id: a Fargate task's (`ip-10-0-1-23`), or on the GPU
    instances (bridge network) its container's, which Docker sets to the container id's first 12 digits."""
    for attachment in task.get("attachments", []):
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address":
                return "ip-" + detail["value"].replace(".", "-")
    for container in task.get("containers", []):
        if container.get("name") == naming.FLEET_CONTAINER_NAME and container.get("runtimeId"):
            return container["runtimeId"][:12]
    return None


def refuse_one_off(target: Target, settings: dict[str, str], outputs, count: int) -> None:
    """`run-task` on a Kinesis Video stream: one task, and only on a stream no fleet worker holds,
    so no stream is read twice (and Kinesis Video allows only 3 GetMedia connections per stream)."""
    source = settings.get(worker_settings.BY_FIELD["source"].name) or kvs_source(outputs["StreamName"])
    prefix = kvs_source("")
    if not source.startswith(prefix):
        return
    stream = source[len(prefix) :]
    if count > 1:
        raise KinaseError(
            f"--count {count} would read stream {stream} {count} times",
            f"to read many streams, run a fleet: `kinase fleet up{target.hint_flag()}`",
        )
    table = streams_workflow.lease_table(target)
    lease = table.get(stream) if table is not None else None
    if lease is not None and lease.owner:
        raise KinaseError(
            f"stream {stream} is read by fleet worker {lease.owner}",
            f"see `kinase fleet status{target.hint_flag()}`; `kinase fleet down` frees it for a one-off task",
        )

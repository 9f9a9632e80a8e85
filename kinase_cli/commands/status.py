"""`kinase status`: stacks, image, tasks, stream, fleet, queues and running cost on one screen."""

from __future__ import annotations

import typer

from infra import naming
from kinase_cli.aws import cost, gpu_capacity, queues, taskdef
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws.outputs import stack_status
from kinase_cli.aws.target import Target
from kinase_cli.local import runs as local_runs
from kinase_cli.options import Json, with_target
from kinase_cli.ui import jsonout
from kinase_cli.ui.console import out
from kinase_cli.ui.text import plain
from kinase_cli.workflows import fleet as fleet_workflow
from kinase_cli.workflows.tasks import local_summary, task_summary
from worker.contract import iso
from worker.retry import error_code

RECENT_TASKS = 10

EPILOG = """\
Examples:

  kinase status
  kinase status --local
  kinase status --json | jq .data.queue
  kinase status --json | jq '.data.tasks[] | {task_id, exit_code}'
  kinase status --json | jq '.data.fleet.workers[] | {worker_id, streams}'

Tasks are the running ones and those ECS still remembers as stopped (about an hour), with exit codes
and stop reasons; on the local stack, the local worker runs. The fleet is `kinase fleet status`'s
view: its workers with the streams each holds, how many of the environment's streams are leased,
and on AWS the service's desired and running counts and autoscaling limits. With `deploy --gpu`,
the GPU instances' failed launches of the last hour (the Auto Scaling group's activity: no capacity
for the type in a zone, a vCPU quota too small) say why GPU tasks wait in PROVISIONING. The cost is
an ESTIMATE (see `kinase run-task --help`).
"""


def _stacks(t) -> list[dict]:
    rows = []
    for concern in naming.CONCERNS:
        stack = stack_status(t, concern) or {}
        updated = stack.get("LastUpdatedTime") or stack.get("CreationTime")
        rows.append(
            {
                "concern": concern,
                "name": t.stack_name(concern),
                "status": stack.get("StackStatus", "NOT_DEPLOYED"),
                "updated_at": iso(updated) if updated else None,
            }
        )
    return rows


def _image(t, outputs) -> dict:
    ecr = t.client("ecr")
    details = [
        d for page in ecr.get_paginator("describe_images").paginate(repositoryName=outputs["RepositoryName"]) for d in page["imageDetails"]
    ]
    newest = max(details, key=lambda d: d.get("imagePushedAt") or 0, default=None)
    definition = taskdef.current(t, outputs)
    return {
        "repository": outputs["RepositoryUri"],
        "latest": None
        if newest is None
        else {
            "digest": newest["imageDigest"],
            "tags": newest.get("imageTags", []),
            "pushed_at": iso(newest["imagePushedAt"]) if newest.get("imagePushedAt") else None,
            "size_bytes": newest.get("imageSizeInBytes"),
        },
        "task_definition": f"{definition['family']}:{definition['revision']}",
        "task_definition_arn": definition["taskDefinitionArn"],
        "runs": taskdef.container(definition, outputs["ContainerName"])["image"],
    }


def _fargate_tasks(t, outputs) -> list[dict]:
    ecs = t.client("ecs")
    cluster = outputs["ClusterName"]
    arns: dict[str, None] = {}
    for desired in ("RUNNING", "STOPPED"):
        for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus=desired):
            arns.update(dict.fromkeys(page["taskArns"]))
    arns = list(arns)
    tasks = []
    for i in range(0, len(arns), 100):
        tasks += ecs.describe_tasks(cluster=cluster, tasks=arns[i : i + 100])["tasks"]
    summaries = [task_summary(task, outputs["ContainerName"]) for task in tasks]
    running = [s for s in summaries if s["last_status"] != "STOPPED"]
    stopped = sorted((s for s in summaries if s["last_status"] == "STOPPED"), key=lambda s: str(s["stopped_at"]), reverse=True)
    return running + stopped[:RECENT_TASKS]


def _local_tasks() -> list[dict]:
    return [local_summary(r) for r in local_runs.records()[:RECENT_TASKS]]


def _stream(t, name: str) -> dict:
    try:
        info = t.client("kinesisvideo").describe_stream(StreamName=name)["StreamInfo"]
    except Exception as exc:  # botocore ClientError
        if error_code(exc) == "ResourceNotFoundException":
            return {"name": name, "status": "MISSING", "retention_hours": None, "created_at": None}
        raise
    return {
        "name": name,
        "status": info.get("Status"),
        "retention_hours": info.get("DataRetentionInHours"),
        "created_at": iso(info["CreationTime"]) if info.get("CreationTime") else None,
    }


def _gaps(t, bucket: str, stream: str) -> list[dict]:
    """The media gaps the stream's worker reported (kept in its checkpoint record), newest last."""
    import json

    from worker.contract import safe_component
    from worker.settings import CHECKPOINTS_PREFIX

    try:
        body = t.client("s3").get_object(Bucket=bucket, Key=f"{CHECKPOINTS_PREFIX}{safe_component(stream)}.json")["Body"].read()
        record = json.loads(body)
    except Exception as exc:  # botocore ClientError, or a record that is not JSON
        if error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket") or isinstance(exc, ValueError):
            return []
        raise
    return [g for g in record.get("gaps") or [] if isinstance(g, dict)] if isinstance(record, dict) else []


def _fleet(t, outputs) -> dict | None:
    """`kinase fleet status`'s view plus lease counts; None for a compute stack deployed before the fleet."""
    if "FleetServiceName" not in outputs:
        return None
    fleet = fleet_workflow.status(t)
    fleet["leased_streams"] = sum(1 for s in fleet["streams"] if s["owner"])
    return fleet


def _gpu(t, outputs) -> dict | None:
    """The GPU capacity provider's group and its recent failed launches; None without `deploy --gpu`."""
    name = outputs.get("GpuCapacityProviderName")
    return gpu_capacity.failed_activities(t, name) if name else None


def _queue(t, url: str) -> dict:
    depth = queues.depth(t.client("sqs"), url)
    return {"url": url, "visible": depth.visible, "in_flight": depth.in_flight}


def _cost(t, tasks: list[dict]) -> dict:
    running = [s for s in tasks if s["last_status"] != "STOPPED"]
    if t.local:
        return {"usd_per_hour": 0.0, "running_tasks": len(running), "estimate": True, "note": "local stack: no AWS charges"}
    estimate = cost.running(t.region_name, running)
    return {
        "usd_per_hour": round(estimate.usd_per_stream_hour * estimate.streams, 6),
        "usd_per_day": round(estimate.usd_per_day, 4),
        "running_tasks": len(running),
        "estimate": True,
        "priced_region": estimate.priced_region,
        "prices_as_of": estimate.prices.as_of,
        "note": f"each task as one stream at {estimate.workload.fps:g} frames/s, upload={estimate.workload.upload}; `kinase cost` has the lines",
    }


def gather(t) -> dict:
    outputs = stack_outputs.read(t, required=naming.CONCERNS)
    tasks = _local_tasks() if t.local else _fargate_tasks(t, outputs)
    return {
        "env": t.env,
        "local": t.local,
        "region": t.region_name,
        "stacks": _stacks(t),
        "image": _image(t, outputs),
        "tasks": tasks,
        "stream": _stream(t, outputs["StreamName"]),
        "gaps": _gaps(t, outputs["FramesBucketName"], outputs["StreamName"]),
        "fleet": _fleet(t, outputs),
        "gpu": _gpu(t, outputs),
        "queue": _queue(t, outputs["ResultsQueueUrl"]),
        "dead_letter_queue": _queue(t, outputs["DeadLetterQueueUrl"]),
        "dashboard_url": outputs.get("DashboardUrl"),  # absent from stacks deployed before the dashboard
        "cost": _cost(t, tasks),
    }


def _render(data: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    where = "local stack" if data["local"] else data["region"]
    out.print(f"[bold]kinase {data['env']}[/] ({where})")
    stacks = Table(title="stacks", title_justify="left", show_edge=False)
    for column in ("stack", "status", "updated"):
        stacks.add_column(column)
    for s in data["stacks"]:
        style = "green" if s["status"].endswith("_COMPLETE") and "ROLLBACK" not in s["status"] else "yellow"
        stacks.add_row(s["name"], f"[{style}]{s['status']}[/]", str(s["updated_at"] or ""))
    out.print(stacks)

    image = data["image"]
    latest = image["latest"]
    out.print(f"\n[bold]image[/] {image['repository']}", highlight=False)
    if latest:
        out.print(f"  latest {latest['digest']} {','.join(latest['tags'])} pushed {latest['pushed_at']}", highlight=False)
    else:
        out.print("  [yellow]no image pushed yet[/] (run `kinase push-image`)", highlight=False)
    out.print(f"  task definition {image['task_definition']} runs {image['runs']}", highlight=False)

    tasks = Table(title="\ntasks", title_justify="left", show_edge=False)
    for column in ("task", "status", "exit", "started", "stopped", "reason"):
        tasks.add_column(column)
    for s in data["tasks"]:
        code = s["exit_code"]
        code_text = "" if code is None else (f"[red]{code}[/]" if code else "0")
        tasks.add_row(
            s["task_id"],
            s["last_status"] or "",
            code_text,
            str(s["started_at"] or ""),
            str(s["stopped_at"] or ""),
            escape(s["stopped_reason"] or ""),
        )
    if data["tasks"]:
        out.print(tasks)
    else:
        out.print("\n[bold]tasks[/] none (start one with `kinase run-task`)")

    stream = data["stream"]
    out.print(f"\n[bold]stream[/] {stream['name']} {stream['status']}, retention {stream['retention_hours']} h", highlight=False)
    if data["gaps"]:
        newest = data["gaps"][-1]
        where = f"fragments {newest.get('from') or '?'}..{newest.get('to') or '?'} ({newest.get('fragments')} fragments, {newest.get('frames')} frames read)"
        out.print(
            plain(
                f"gaps   {len(data['gaps'])} reported by the worker; newest at {newest.get('at')}: {where} not processed: {newest.get('reason')}",
                "yellow",
            )
        )
    _render_fleet(data["fleet"])
    _render_gpu(data["gpu"])
    queue, dlq = data["queue"], data["dead_letter_queue"]
    out.print(f"[bold]queue[/]  {queue['visible']} waiting, {queue['in_flight']} in flight", highlight=False)
    dlq_style = "bold red" if dlq["visible"] or dlq["in_flight"] else "green"
    out.print(f"[bold]DLQ[/]    [{dlq_style}]{dlq['visible']} waiting, {dlq['in_flight']} in flight[/]", highlight=False)
    if data["dashboard_url"]:
        out.print("[bold]dashboard[/] ", end="", highlight=False)
        out.print(data["dashboard_url"], markup=False, highlight=False, soft_wrap=True)
    money = data["cost"]
    out.print(
        f"[bold]cost[/]   ~${money['usd_per_hour']:.4f}/h for {money['running_tasks']} running task(s) (estimate; {money['note']})",
        highlight=False,
    )


def _render_gpu(gpu: dict | None) -> None:
    """A GPU task waits in PROVISIONING while its instance does not start; the group's activity says why."""
    if gpu is None:
        return
    failed = gpu["failed_activities"]
    if not failed:
        out.print(plain(f"gpu    capacity provider {gpu['capacity_provider']}: no failed instance launches in the last hour"))
        return
    out.print(
        plain(
            f"gpu    capacity provider {gpu['capacity_provider']}: GPU instances do not start "
            f"({len(failed)} failed launch(es) of group {gpu['group']}; GPU tasks wait in PROVISIONING until one starts)",
            "bold red",
        )
    )
    for activity in failed:
        out.print(plain(f"  {activity['status']} {activity['started_at']}: {activity['cause']}", "red"), soft_wrap=True)


def _render_fleet(fleet: dict | None) -> None:
    from rich.table import Table
    from rich.text import Text

    if fleet is None:
        return
    line = Text.assemble(
        ("\nfleet", "bold"),
        f"  {len(fleet['workers'])} worker(s), {fleet['leased_streams']} of {len(fleet['streams'])} stream(s) leased",
    )
    scaling = fleet["scaling"]
    if scaling:
        line.append("; " + fleet_workflow.scaling_text(scaling))
    out.print(line)
    if not fleet["workers"]:
        return
    workers = Table(show_edge=False)
    workers.add_column("worker", overflow="fold")
    workers.add_column("pid" if fleet["local"] else "task", no_wrap=True)
    workers.add_column("streams", overflow="fold")
    for w in fleet["workers"]:
        where = str(w.get("pid") or w.get("task_id") or ("(not listed)" if w.get("listed") is False else ""))
        workers.add_row(plain(w.get("worker_id") or ""), where, plain(", ".join(w["streams"])))
    out.print(workers)


@with_target
def status(json_out: Json = False, *, target: Target) -> None:
    """Show stacks, image, tasks, stream, fleet, queue and DLQ depth, and the estimated running cost."""
    data = gather(target)
    if json_out:
        jsonout.emit("status", data)
    else:
        _render(data)


def register(app: typer.Typer) -> None:
    app.command("status", help=status.__doc__, epilog=EPILOG)(status)

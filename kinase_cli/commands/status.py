"""`kinase status`: stacks, image, tasks, stream, queues and running cost on one screen."""

from __future__ import annotations

import typer

from infra.naming import DEFAULT_ENV
from kinase_cli.options import Env, Json, Local, Profile, Region, target

RECENT_TASKS = 10

EPILOG = """\
Examples:

  kinase status
  kinase status --local
  kinase status --json | jq .data.queue

Tasks are the running ones and those ECS still remembers as stopped (about an hour), with exit codes
and stop reasons; on the local stack, the local worker runs. The cost is an ESTIMATE (see
`kinase run-task --help`).
"""


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


def _stacks(t) -> list[dict]:
    from infra import naming
    from kinase_cli.aws.outputs import stack_status
    from kinase_cli.commands.tasks import when

    rows = []
    for concern in naming.CONCERNS:
        stack = stack_status(t, concern) or {}
        rows.append(
            {
                "concern": concern,
                "name": t.stack_name(concern),
                "status": stack.get("StackStatus", "NOT_DEPLOYED"),
                "updatedAt": when(stack.get("LastUpdatedTime") or stack.get("CreationTime")),
            }
        )
    return rows


def _image(t, outputs) -> dict:
    from kinase_cli.aws import taskdef
    from kinase_cli.commands.tasks import when

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
            "pushedAt": when(newest.get("imagePushedAt")),
            "sizeBytes": newest.get("imageSizeInBytes"),
        },
        "taskDefinition": f"{definition['family']}:{definition['revision']}",
        "taskDefinitionArn": definition["taskDefinitionArn"],
        "runs": taskdef.container(definition, outputs["ContainerName"])["image"],
    }


def _fargate_tasks(t, outputs) -> list[dict]:
    from kinase_cli.commands.tasks import task_summary

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
    running = [s for s in summaries if s["lastStatus"] != "STOPPED"]
    stopped = sorted((s for s in summaries if s["lastStatus"] == "STOPPED"), key=lambda s: str(s["stoppedAt"]), reverse=True)
    return running + stopped[:RECENT_TASKS]


def _local_tasks() -> list[dict]:
    from kinase_cli.local import runs as local_runs

    return [
        {
            "taskId": r["taskId"],
            "lastStatus": r["lastStatus"],
            "exitCode": r.get("exitCode"),
            "stoppedReason": r.get("stoppedReason"),
            "startedAt": r.get("startedAt"),
            "stoppedAt": r.get("stoppedAt"),
            "cpu": None,
            "memory": None,
        }
        for r in local_runs.records()[:RECENT_TASKS]
    ]


def _stream(t, name: str) -> dict:
    from kinase_cli.commands.tasks import when

    try:
        info = t.client("kinesisvideo").describe_stream(StreamName=name)["StreamInfo"]
    except Exception as exc:  # botocore ClientError
        if _error_code(exc) == "ResourceNotFoundException":
            return {"name": name, "status": "MISSING", "retentionHours": None}
        raise
    return {
        "name": name,
        "status": info.get("Status"),
        "retentionHours": info.get("DataRetentionInHours"),
        "createdAt": when(info.get("CreationTime")),
    }


def _queue(t, url: str) -> dict:
    attrs = t.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return {
        "url": url,
        "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
        "inFlight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def _cost(t, tasks: list[dict]) -> dict:
    from kinase_cli.aws import cost

    running = [s for s in tasks if s["lastStatus"] != "STOPPED"]
    if t.local:
        return {"usdPerHour": 0.0, "runningTasks": len(running), "estimate": True, "note": "local stack: no AWS charges"}
    sized = [s for s in running if s.get("cpu") and s.get("memory")]
    total = sum(cost.fargate_hourly(int(s["cpu"]), int(s["memory"]), t.region_name).usd_per_hour for s in sized)
    return {
        "usdPerHour": round(float(total), 6),
        "runningTasks": len(running),
        "estimate": True,
        "pricesAsOf": cost.PRICES_AS_OF,
        "note": "Fargate on-demand Linux/x86 compute only",
    }


def gather(t) -> dict:
    from infra import naming
    from kinase_cli.aws import outputs as stack_outputs

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
        "queue": _queue(t, outputs["ResultsQueueUrl"]),
        "deadLetterQueue": _queue(t, outputs["DeadLetterQueueUrl"]),
        "cost": _cost(t, tasks),
    }


def _render(data: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    from kinase_cli.ui.console import out

    where = "local stack" if data["local"] else data["region"]
    out.print(f"[bold]kinase {data['env']}[/] ({where})")
    stacks = Table(title="stacks", title_justify="left", show_edge=False)
    for column in ("stack", "status", "updated"):
        stacks.add_column(column)
    for s in data["stacks"]:
        style = "green" if s["status"].endswith("_COMPLETE") and "ROLLBACK" not in s["status"] else "yellow"
        stacks.add_row(s["name"], f"[{style}]{s['status']}[/]", str(s["updatedAt"] or ""))
    out.print(stacks)

    image = data["image"]
    latest = image["latest"]
    out.print(f"\n[bold]image[/] {image['repository']}", highlight=False)
    if latest:
        out.print(f"  latest {latest['digest']} {','.join(latest['tags'])} pushed {latest['pushedAt']}", highlight=False)
    else:
        out.print("  [yellow]no image pushed yet[/] (run `kinase push-image`)", highlight=False)
    out.print(f"  task definition {image['taskDefinition']} runs {image['runs']}", highlight=False)

    tasks = Table(title="\ntasks", title_justify="left", show_edge=False)
    for column in ("task", "status", "exit", "started", "stopped", "reason"):
        tasks.add_column(column)
    for s in data["tasks"]:
        code = s["exitCode"]
        code_text = "" if code is None else (f"[red]{code}[/]" if code else "0")
        tasks.add_row(
            s["taskId"],
            s["lastStatus"] or "",
            code_text,
            str(s["startedAt"] or ""),
            str(s["stoppedAt"] or ""),
            escape(s["stoppedReason"] or ""),
        )
    if data["tasks"]:
        out.print(tasks)
    else:
        out.print("\n[bold]tasks[/] none (start one with `kinase run-task`)")

    stream = data["stream"]
    out.print(f"\n[bold]stream[/] {stream['name']} {stream['status']}, retention {stream['retentionHours']} h", highlight=False)
    queue, dlq = data["queue"], data["deadLetterQueue"]
    out.print(f"[bold]queue[/]  {queue['visible']} waiting, {queue['inFlight']} in flight", highlight=False)
    dlq_style = "bold red" if dlq["visible"] or dlq["inFlight"] else "green"
    out.print(f"[bold]DLQ[/]    [{dlq_style}]{dlq['visible']} waiting, {dlq['inFlight']} in flight[/]", highlight=False)
    money = data["cost"]
    out.print(
        f"[bold]cost[/]   ~${money['usdPerHour']:.4f}/h for {money['runningTasks']} running task(s) (estimate; {money['note']})",
        highlight=False,
    )


def status(
    json_out: Json = False,
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = DEFAULT_ENV,
) -> None:
    """Show stacks, image, tasks, stream, queue and DLQ depth, and the estimated running cost."""
    from kinase_cli.ui import jsonout

    data = gather(target(profile, region, local, env))
    if json_out:
        jsonout.emit("status", data)
    else:
        _render(data)


def register(app: typer.Typer) -> None:
    app.command("status", help=status.__doc__, epilog=EPILOG)(status)

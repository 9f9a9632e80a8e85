"""`kinase status`'s view gathered in one dict: stacks, image, tasks, stream with its gaps and running counts
(from its checkpoint), fleet (each stream's counts from its lease), GPU capacity, queues and the estimated
running cost (the command renders it, or prints it with --json)."""

from __future__ import annotations

from infra import naming
from kinase_cli.aws import cost, gpu_capacity, queues, taskdef
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws.outputs import stack_status
from kinase_cli.aws.target import Target
from kinase_cli.local import runs as local_runs
from kinase_cli.workflows import fleet as fleet_workflow
from kinase_cli.workflows.streams import checkpoint_counts
from kinase_cli.workflows.tasks import local_summary, task_summary
from worker.contract import iso
from worker.retry import error_code

RECENT_TASKS = 10


def _stacks(target) -> list[dict]:
    rows = []
    for concern in naming.CONCERNS:
        stack = stack_status(target, concern) or {}
        updated = stack.get("LastUpdatedTime") or stack.get("CreationTime")
        rows.append(
            {
                "concern": concern,
                "name": target.stack_name(concern),
                "status": stack.get("StackStatus", "NOT_DEPLOYED"),
                "updated_at": iso(updated) if updated else None,
            }
        )
    return rows


def _image(target, outputs) -> dict:
    ecr = target.client("ecr")
    details = [
        d for page in ecr.get_paginator("describe_images").paginate(repositoryName=outputs["RepositoryName"]) for d in page["imageDetails"]
    ]
    newest = max(details, key=lambda d: d.get("imagePushedAt") or 0, default=None)
    definition = taskdef.current(target, outputs)
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


def _fargate_tasks(target, outputs) -> list[dict]:
    ecs = target.client("ecs")
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


def _stream(target, name: str) -> dict:
    try:
        info = target.client("kinesisvideo").describe_stream(StreamName=name)["StreamInfo"]
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


def _checkpoint(target, bucket: str, stream: str) -> dict:
    """The stream's one-off worker's checkpoint record (empty when there is none or it is not a JSON object)."""
    import json

    from worker.layout import checkpoint_key

    try:
        body = target.client("s3").get_object(Bucket=bucket, Key=checkpoint_key(stream))["Body"].read()
        record = json.loads(body)
    except Exception as exc:  # botocore ClientError, or a record that is not JSON
        if error_code(exc) in ("NoSuchKey", "404", "NoSuchBucket") or isinstance(exc, ValueError):
            return {}
        raise
    return record if isinstance(record, dict) else {}


def _gaps(record: dict) -> list[dict]:
    """The media gaps the stream's worker reported (kept in its checkpoint record), newest last."""
    return [g for g in record.get("gaps") or [] if isinstance(g, dict)]


def _fleet(target, outputs) -> dict | None:
    """`kinase fleet status`'s view plus lease counts; None for a compute stack deployed before the fleet."""
    if "FleetServiceName" not in outputs:
        return None
    fleet = fleet_workflow.status(target)
    fleet["leased_streams"] = sum(1 for s in fleet["streams"] if s["owner"])
    return fleet


def _gpu(target, outputs) -> dict | None:
    """The GPU capacity provider's group and its recent failed launches; None without `deploy --gpu`."""
    name = outputs.get("GpuCapacityProviderName")
    return gpu_capacity.failed_activities(target, name) if name else None


def _queue(target, url: str) -> dict:
    depth = queues.depth(target.client("sqs"), url)
    return {"url": url, "visible": depth.visible, "in_flight": depth.in_flight}


def _cost(target, tasks: list[dict]) -> dict:
    running = [s for s in tasks if s["last_status"] != "STOPPED"]
    if target.local:
        return {"usd_per_hour": 0.0, "running_tasks": len(running), "estimate": True, "note": "local stack: no AWS charges"}
    estimate = cost.running(target.region_name, running)
    return {
        "usd_per_hour": round(estimate.usd_per_stream_hour * estimate.streams, 6),
        "usd_per_day": round(estimate.usd_per_day, 4),
        "running_tasks": len(running),
        "estimate": True,
        "priced_region": estimate.priced_region,
        "prices_as_of": estimate.prices.as_of,
        "note": f"each task as one stream at {estimate.workload.fps:g} frames/s, upload={estimate.workload.upload}; `kinase cost` has the lines",
    }


def gather(target: Target) -> dict:
    """Everything `kinase status` shows, as its `--json` data."""
    outputs = stack_outputs.read(target, required=naming.CONCERNS)
    tasks = _local_tasks() if target.local else _fargate_tasks(target, outputs)
    checkpoint = _checkpoint(target, outputs["FramesBucketName"], outputs["StreamName"])
    return {
        "env": target.env,
        "local": target.local,
        "region": target.region_name,
        "stacks": _stacks(target),
        "image": _image(target, outputs),
        "tasks": tasks,
        "stream": _stream(target, outputs["StreamName"]),
        "gaps": _gaps(checkpoint),
        "counts": checkpoint_counts(checkpoint),
        "fleet": _fleet(target, outputs),
        "gpu": _gpu(target, outputs),
        "queue": _queue(target, outputs["ResultsQueueUrl"]),
        "dead_letter_queue": _queue(target, outputs["DeadLetterQueueUrl"]),
        "dashboard_url": outputs.get("DashboardUrl"),  # absent from stacks deployed before the dashboard
        "cost": _cost(target, tasks),
    }

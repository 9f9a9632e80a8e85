"""An environment's Kinesis Video streams: created with its name prefix and tag, adopted by tag, listed with their leases.

A stream belongs to environment ENV when its name starts with `kinase-ENV-` (`kinase stream create`
adds the prefix) or, for a camera stream whose name cannot change, when it carries the tag
`kinase:env=ENV` (`kinase stream adopt`). The fleet's task role may read exactly those (IAM by
name prefix, and by the tag for adopted ones). The lease table of the storage stack is the fleet's
list of streams: create and adopt write a free lease, rm deletes it, and `ls` shows each
stream's owner, lag and processed frames per second from it (blank when no fleet runs).
"""

from __future__ import annotations

from infra import naming
from kinase_cli.aws.target import Target
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from worker.contract import iso
from worker.retry import error_code

MEDIA_TYPE = "video/h264"


def full_name(env: str, name: str) -> str:
    """NAME with the environment's prefix (added once: `cam1` and `kinase-dev-cam1` are the same stream)."""
    prefix = naming.stream_prefix(env)
    return name if name.startswith(prefix) else prefix + name


def lease_table(target: Target):
    """The fleet's lease table, or None when the environment has none (storage stack not deployed, or
    no AWS endpoint to ask: a Kinesis Video endpoint alone). Asked once, without retries."""
    from botocore.config import Config
    from botocore.exceptions import ClientError, EndpointConnectionError

    from worker.leases import LeaseTable

    name = naming.lease_table_name(target.env)
    probe = target.session.client("dynamodb", endpoint_url=target.endpoint_for("dynamodb"), config=Config(retries={"max_attempts": 1}))
    try:
        probe.describe_table(TableName=name)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    except EndpointConnectionError as exc:
        console.warn(f"no lease information: {exc}")
        return None
    return LeaseTable(target.client("dynamodb"), name)


def all_streams(client, prefix: str | None) -> list[dict]:
    found, token = [], None
    while True:
        kwargs: dict = {"MaxResults": 10000}
        if prefix:
            kwargs["StreamNameCondition"] = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": prefix}
        if token:
            kwargs["NextToken"] = token
        page = client.list_streams(**kwargs)
        found += page.get("StreamInfoList", [])
        token = page.get("NextToken")
        if not token:
            return found


def info(s: dict) -> dict:
    created = s.get("CreationTime")
    return {
        "name": s["StreamName"],
        "arn": s["StreamARN"],
        "status": s.get("Status"),
        "retention_hours": s.get("DataRetentionInHours", 0),
        "media_type": s.get("MediaType"),
        "created_at": iso(created) if created else None,
        "version": s.get("Version"),
        "kms_key_id": s.get("KmsKeyId"),
    }


def create(target: Target, name: str, retention_hours: int) -> dict:
    client = target.client("kinesisvideo")
    stream = full_name(target.env, name)
    try:
        client.create_stream(
            StreamName=stream, DataRetentionInHours=retention_hours, MediaType=MEDIA_TYPE, Tags={naming.ENV_TAG: target.env}
        )
    except client.exceptions.ResourceInUseException:
        raise KinaseError(f"stream {stream} exists already", f"see `kinase stream ls{target.hint_flag()}`") from None
    table = lease_table(target)
    if table is not None:
        table.ensure(stream)
    return {**info(client.describe_stream(StreamName=stream)["StreamInfo"]), "leased": table is not None}


def adopt(target: Target, name: str) -> dict:
    """Tag an existing stream with the environment (IAM then lets the fleet read it) and give it a lease."""
    client = target.client("kinesisvideo")
    try:
        stream = client.describe_stream(StreamName=name)["StreamInfo"]
    except client.exceptions.ResourceNotFoundException:
        raise KinaseError(f"no stream {name}", f"see `kinase stream ls --all{target.hint_flag()}`") from None
    client.tag_stream(StreamARN=stream["StreamARN"], Tags={naming.ENV_TAG: target.env})
    table = lease_table(target)
    if table is None:
        raise KinaseError("the environment has no lease table", f"run `kinase deploy{target.hint_flag()}` first")
    table.ensure(name, adopted=True)
    return {**info(stream), "adopted": True}


def remove(target: Target, name: str) -> dict:
    """Delete one of the environment's streams and its lease (its fleet worker stops reading it at its
    next renewal). An adopted stream is not the environment's to delete: only its lease goes."""
    client = target.client("kinesisvideo")
    table = lease_table(target)
    lease = table.get(name) if table is not None else None
    if lease is not None and lease.adopted:
        table.client.delete_item(TableName=table.table, Key={"stream": {"S": name}})
        return {"name": name, "deleted": False, "lease_deleted": True}
    stream = full_name(target.env, name)
    try:
        arn = client.describe_stream(StreamName=stream)["StreamInfo"]["StreamARN"]
    except client.exceptions.ResourceNotFoundException:
        raise KinaseError(f"no stream {stream} in environment {target.env}", f"see `kinase stream ls{target.hint_flag()}`") from None
    client.delete_stream(StreamARN=arn)
    if table is not None:
        table.client.delete_item(TableName=table.table, Key={"stream": {"S": stream}})
    return {"name": stream, "arn": arn, "deleted": True, "lease_deleted": table is not None}


def lease_prefixed(target: Target) -> list[str]:
    """Give every stream named with the environment's prefix a lease if it has none; the names leased now."""
    table = lease_table(target)
    if table is None:
        raise KinaseError("the environment has no lease table", f"run `kinase deploy{target.hint_flag()}` first")
    names = [s["StreamName"] for s in all_streams(target.client("kinesisvideo"), naming.stream_prefix(target.env))]
    return [name for name in names if table.ensure(name)]


def listing(target: Target, all_: bool = False) -> list[dict]:
    """The environment's streams (prefix, and adopted ones) with their lease: owner, lag, fps, checkpoint.

    Without a lease table the lease columns stay blank."""
    client = target.client("kinesisvideo")
    table = lease_table(target)
    leases = {lease.stream: lease for lease in table.scan()} if table is not None else {}
    streams = {s["StreamName"]: s for s in all_streams(client, None if all_ else naming.stream_prefix(target.env))}
    for name, lease in leases.items():
        if lease.adopted and name not in streams:
            try:
                streams[name] = client.describe_stream(StreamName=name)["StreamInfo"]
            except client.exceptions.ResourceNotFoundException:
                continue
    rows = []
    for name in sorted(streams):
        lease = leases.get(name)
        checkpoint = (lease.checkpoint or {}) if lease else {}
        rows.append(
            {
                **info(streams[name]),
                "adopted": bool(lease and lease.adopted),
                "leased": lease is not None,
                "owner": lease.owner if lease else None,
                "lag_ms": lease.lag_ms if lease else None,
                "fps": lease.fps if lease else None,
                "stats_at": lease.stats_at if lease else None,
                "checkpoint_fragment": checkpoint.get("fragment_number"),
                "checkpoint_at": checkpoint.get("updated_at"),
            }
        )
    return rows

"""An environment's Kinesis Video streams: created with its name prefix and tag, adopted by tag, listed with their leases.

A stream belongs to environment ENV when it carries the tag `kinase:env=ENV`: `kinase stream
create` names it `kinase-ENV-NAME` and tags it, `kinase stream adopt` tags a camera stream whose
name cannot change. The prefix alone is not enough: a stream named `kinase-ENV-...` whose tag names
another environment (one named before environment names lost their `-`, see infra/naming.py) or no
environment is not this one's to list, lease, describe or delete. The fleet's task role may read
exactly the tagged ones (an `aws:ResourceTag` condition). The lease table of the storage stack is
the fleet's list of streams: create and adopt write a free lease, rm deletes it, and `ls` shows each
stream's owner, lag and processed frames per second from it (blank when no fleet runs).
"""

from __future__ import annotations

from infra import naming
from kinase_cli.aws.target import Target
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import visible
from worker.contract import iso
from worker.retry import error_code

MEDIA_TYPE = "video/h264"


def full_name(env: str, name: str) -> str:
    """NAME with the environment's prefix (added once: `cam1` and `kinase-dev-cam1` are the same stream)."""
    prefix = naming.stream_prefix(env)
    return name if name.startswith(prefix) else prefix + name


def resolve(client, env: str, name: str) -> str:
    """The stream NAME means, as `create` and `rm` read it: the environment's `kinase-ENV-NAME` when there is
    one, else NAME as given (an adopted stream keeps its own name)."""
    stream = full_name(env, name)
    return stream if stream == name or _find(client, stream) is not None else name


def env_of(client, arn: str) -> str | None:
    """The environment a stream belongs to: its `kinase:env` tag (None: no environment's)."""
    return client.list_tags_for_stream(StreamARN=arn).get("Tags", {}).get(naming.ENV_TAG)


def _find(client, name: str) -> dict | None:
    try:
        return client.describe_stream(StreamName=name)["StreamInfo"]
    except client.exceptions.ResourceNotFoundException:
        return None


def owned(target: Target, client, name: str) -> dict:
    """NAME's StreamInfo when it is one of the environment's streams; otherwise one line saying whose it is."""
    stream = _find(client, name)
    if stream is None:
        raise KinaseError(f"no stream {name} in environment {target.env}", f"see `kinase stream ls{target.hint_flag()}`")
    owner = env_of(client, stream["StreamARN"])
    if owner == target.env:
        return stream
    if owner is None:
        raise KinaseError(
            f"stream {name} is not a stream of environment {target.env} (it has no {naming.ENV_TAG} tag)",
            f"`kinase stream adopt {name}{target.hint_flag()}` makes it one",
        )
    raise KinaseError(
        f"stream {name} belongs to environment {visible(owner, limit=60)}, not {target.env}",
        "run the command with that environment's --env if it is yours",
    )


def lease_table(target: Target):
    """The fleet's lease table, or None when the environment has none (storage stack not deployed, or
    no AWS endpoint to ask: a Kinesis Video endpoint alone). Asked once, without retries."""
    from botocore.config import Config
    from botocore.exceptions import ClientError, EndpointConnectionError

    from worker.fleet.leases import LeaseTable

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
    """Tag an existing stream with the environment (IAM then lets the fleet read it) and give it a lease.
    Another environment's stream is refused: re-tagging it would take it from that environment's fleet."""
    client = target.client("kinesisvideo")
    stream = _find(client, name)
    if stream is None:
        raise KinaseError(f"no stream {name}", f"see `kinase stream ls --all{target.hint_flag()}`")
    owner = env_of(client, stream["StreamARN"])
    if owner not in (None, target.env):
        raise KinaseError(
            f"stream {name} belongs to environment {visible(owner, limit=60)}",
            "if that environment adopted it, `kinase stream rm` there releases it first",
        )
    table = lease_table(target)
    if table is None:
        raise KinaseError("the environment has no lease table", f"run `kinase deploy{target.hint_flag()}` first")
    client.tag_stream(StreamARN=stream["StreamARN"], Tags={naming.ENV_TAG: target.env})
    table.ensure(name, adopted=True)
    return {**info(stream), "adopted": True}


def remove(target: Target, name: str) -> dict:
    """Delete one of the environment's streams and its lease (its fleet worker stops reading it at its
    next renewal). An adopted stream is not the environment's to delete: its lease and tag go. Another
    environment's stream, even one named with this environment's prefix, is refused."""
    client = target.client("kinesisvideo")
    table = lease_table(target)
    lease = table.get(name) if table is not None else None
    stream = full_name(target.env, name)
    adopted = lease is not None and lease.adopted
    if not adopted and stream != name and _find(client, stream) is None and _find(client, name) is not None:
        owned(target, client, name)  # refuses another environment's stream
        adopted = True  # the environment's by its tag alone, without a prefix: adopted (its lease lost)
    if adopted:
        if table is not None:
            _drop_lease(table, name)
        _untag(target, client, name)
        return {"name": name, "deleted": False, "lease_deleted": lease is not None}
    arn = owned(target, client, stream)["StreamARN"]
    client.delete_stream(StreamARN=arn)
    if table is not None:
        _drop_lease(table, stream)
    return {"name": stream, "arn": arn, "deleted": True, "lease_deleted": table is not None}


def _untag(target: Target, client, name: str) -> None:
    """Release an adopted stream that still exists and is still tagged ours: the task role stops reading it and
    another environment may adopt it."""
    stream = _find(client, name)
    if stream is not None and env_of(client, stream["StreamARN"]) == target.env:
        client.untag_stream(StreamARN=stream["StreamARN"], TagKeyList=[naming.ENV_TAG])


def lease_prefixed(target: Target) -> list[str]:
    """Give every stream of the environment named with its prefix a lease if it has none; the names leased now.

    A prefixed stream that is not the environment's (tagged for another, or not at all) gets none, and
    loses one an earlier `fleet up` gave it (before streams were told apart by their tag), with a warning."""
    table = lease_table(target)
    if table is None:
        raise KinaseError("the environment has no lease table", f"run `kinase deploy{target.hint_flag()}` first")
    client = target.client("kinesisvideo")
    leased = {lease.stream for lease in table.scan()}
    names = []
    for stream in all_streams(client, naming.stream_prefix(target.env)):
        name, owner = stream["StreamName"], env_of(client, stream["StreamARN"])
        if owner == target.env:
            names.append(name)
            continue
        why = (
            f"belongs to environment {visible(owner, limit=60)}"
            if owner
            else f"has no {naming.ENV_TAG} tag (`kinase stream adopt {name}{target.hint_flag()}` makes it this environment's)"
        )
        if name in leased:
            _drop_lease(table, name)
            console.warn(f"dropped the lease of {name}: it has the environment's prefix but {why}")
        else:
            console.warn(f"not leasing {name}: it has the environment's prefix but {why}")
    return [name for name in names if table.ensure(name)]


def _drop_lease(table, name: str) -> None:
    """Delete a stream's lease whoever holds it: its owner's next renewal fails and it stops reading the stream."""
    table.client.delete_item(TableName=table.table, Key={"stream": {"S": name}})


def checkpoint_counts(record: dict | None) -> dict | None:
    """The stream's running counts its worker's `analyse` stage saved in the checkpoint record (S3 or the lease),
    as frames carry them; None without rules or before the worker saved any."""
    from worker.stages.analyse import Analyse

    stages = record.get("stages") if isinstance(record, dict) else None
    state = stages.get(Analyse.name) if isinstance(stages, dict) else None
    counts = state.get("counts") if isinstance(state, dict) else None
    return counts if isinstance(counts, dict) else None


def listing(target: Target, all_: bool = False) -> list[dict]:
    """The environment's streams (those tagged with it) with their lease: owner, lag, fps, checkpoint.

    Without a lease table the lease columns stay blank."""
    client = target.client("kinesisvideo")
    table = lease_table(target)
    leases = {lease.stream: lease for lease in table.scan()} if table is not None else {}
    streams = {s["StreamName"]: s for s in all_streams(client, None if all_ else naming.stream_prefix(target.env))}
    if not all_:
        streams = {name: s for name, s in streams.items() if env_of(client, s["StreamARN"]) == target.env}
    for name, lease in leases.items():
        if lease.adopted and name not in streams:
            stream = _find(client, name)
            if stream is not None and (all_ or env_of(client, stream["StreamARN"]) == target.env):
                streams[name] = stream
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
                "counts": checkpoint_counts(checkpoint),
            }
        )
    return rows

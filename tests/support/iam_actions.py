"""A recorded AWS call (worker/callrecord.py) as the IAM request AWS would judge: action, resources, context.

The actions and ARN formats come from parliament's IAM definitions (PyPI `parliament`, which ships
AWS's service authorization reference as `iam_definition.json`: privileges per service prefix, the
resource types each acts on, their ARN formats). Most operations are authorized by the action of
their own name; ACTIONS lists the ones that are not, each with the AWS page that says so. An
operation with neither, or a resource type without a rule in VARIABLES, raises UnmappedCall: the
check fails instead of guessing.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

# (IAM prefix, operation) -> IAM action, where AWS authorizes an operation by another action's name.
ACTIONS = {
    # SQS Developer Guide, "Amazon SQS API permissions: Actions and resource reference": batch
    # operations are authorized by the single-message action.
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    # S3 User Guide, "Required permissions for Amazon S3 API operations": ListObjects(V2) and
    # HeadBucket need s3:ListBucket, HeadObject s3:GetObject, DeleteObjects s3:DeleteObject per key,
    # the multipart upload operations s3:PutObject.
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    # SNS Developer Guide, "Amazon SNS message batching": PublishBatch is authorized by sns:Publish (no action of its own).
    ("sns", "PublishBatch"): "sns:Publish",
}
# Operations whose objects the recording does not list (a request body): judged as on every object of the bucket.
ANY_OBJECT = frozenset({("s3", "DeleteObjects")})
# Operations that name none of the resources the definitions list for them: judged against "*". ECS ListTasks
# lists container-instance, yet `kinase` filters by cluster only (ECS Developer Guide, "Amazon ECS API
# actions": ListTasks is scoped by the ecs:cluster condition key).
UNNAMED = frozenset({("ecs", "ListTasks")})
# Condition keys a request carries, from its parameters (IAM User Guide, service-specific keys).
REQUEST_KEYS = {("s3", "ListBucket"): {"s3:prefix": "Prefix"}}
UNKNOWN = "unknown"  # a part of an ARN the call does not name (a stream's creation time, a stack's id)


class UnmappedCall(LookupError):
    """A call this module cannot turn into an IAM request: the check fails rather than guessing."""


@dataclass(frozen=True)
class Request:
    principal: str
    call: str  # service:Operation as recorded
    action: str
    resources: tuple[str, ...]
    context: dict = field(default_factory=dict, hash=False, compare=False)


@cache
def definitions() -> dict[str, dict]:
    """IAM prefix -> {"privileges": {name: privilege}, "resources": {type: arn format}} from parliament's data."""
    spec = importlib.util.find_spec("parliament")  # the data only: importing parliament needs pkg_resources
    data = json.loads((Path(spec.submodule_search_locations[0]) / "iam_definition.json").read_text())
    merged: dict[str, dict] = {}
    for service in data:
        entry = merged.setdefault(service["prefix"], {"privileges": {}, "resources": {}})
        for p in service["privileges"]:
            entry["privileges"].setdefault(p["privilege"], p)
        for r in service["resources"]:
            entry["resources"].setdefault(r["resource"], r["arn"])
    return merged


def action_of(service: str, operation: str) -> str:
    action = ACTIONS.get((service, operation), f"{service}:{operation}")
    prefix, name = action.split(":", 1)
    if name not in definitions().get(prefix, {}).get("privileges", {}):
        raise UnmappedCall(f"{service}:{operation}: no IAM action {action} in parliament's definitions and no entry in ACTIONS")
    return action


def _last(value: str, sep: str = "/") -> str:
    return value.rsplit(sep, 1)[-1]


def _arn_part(value: str, index: int) -> str:
    """Part `index` of the resource path of an ARN (`stack/NAME/ID`), or the value itself when it is a plain name."""
    if not value.startswith("arn:"):
        return value if index == 1 else UNKNOWN
    parts = value.split(":", 5)[5].split("/")
    return parts[index] if index < len(parts) else UNKNOWN


def _task_definition(value: str) -> tuple[str, str]:
    family_rev = _last(value) if value.startswith("arn:") else value
    family, _, revision = family_rev.partition(":")
    return family, revision or UNKNOWN


def _values(params: dict, name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [str(value)]


# ARN variable -> the values a call's parameters give it (several: a call naming several resources).
VARIABLES = {
    "BucketName": lambda p: _values(p, "Bucket"),
    "ObjectName": lambda p: _values(p, "Key"),
    "QueueName": lambda p: [_last(urlsplit(u).path) for u in _values(p, "QueueUrl")],
    "TableName": lambda p: _values(p, "TableName"),
    "StreamName": lambda p: _values(p, "StreamName") or [_arn_part(a, 1) for a in _values(p, "StreamARN")],
    "CreationTime": lambda p: [_arn_part(a, 2) for a in _values(p, "StreamARN")] or [UNKNOWN],
    "StackName": lambda p: [_arn_part(s, 1) for s in _values(p, "StackName")],
    "Id": lambda p: [_arn_part(s, 2) for s in _values(p, "StackName")],
    "ClusterName": lambda p: [_last(c) for c in _values(p, "cluster")] or ["default"],
    "TaskId": lambda p: [_last(t) for t in _values(p, "tasks") + _values(p, "task")],
    "ServiceName": lambda p: [_last(s) for s in _values(p, "services") + _values(p, "service")],
    "TaskDefinitionFamilyName": lambda p: [_task_definition(t)[0] for t in _values(p, "taskDefinition") + _values(p, "family")],
    "TaskDefinitionRevisionNumber": lambda p: [_task_definition(t)[1] for t in _values(p, "taskDefinition") + _values(p, "family")],
    "LogGroupName": lambda p: _values(p, "logGroupName"),
    "LogStreamName": lambda p: _values(p, "logStreamName"),
    "RepositoryName": lambda p: _values(p, "repositoryName"),
    "ResourceId": lambda p: [UNKNOWN],  # a scalable target's ARN carries a generated id, never a name
    "TopicName": lambda p: [t.rsplit(":", 1)[-1] for t in _values(p, "TopicArn")],
}


def _arns(arn_format: str, params: dict, region: str, account: str) -> list[str]:
    names = re.findall(r"\$\{(\w+)\}", arn_format)
    choices = []
    for name in names:
        if name == "Partition":
            choices.append(["aws"])
        elif name == "Region":
            choices.append([region])
        elif name == "Account":
            queue_accounts = [urlsplit(u).path.strip("/").split("/")[0] for u in _values(params, "QueueUrl")]
            choices.append(queue_accounts[:1] or [account])
        elif name in VARIABLES:
            values = VARIABLES[name](params)
            if not values:
                return []
            choices.append(values)
        else:
            raise UnmappedCall(f"no rule for the ARN variable {name} of {arn_format}")
    arns = []
    for combo in itertools.product(*choices):
        arn = arn_format
        for name, value in zip(names, combo, strict=True):
            arn = arn.replace("${" + name + "}", value, 1)
        arns.append(arn)
    return arns


def request(call: dict, *, account: str, tags=lambda arn: {}) -> Request:
    """The IAM request of one recorded call; `tags(arn)` gives a resource's tags (aws:ResourceTag keys)."""
    service, operation, params = call["service"], call["operation"], call["params"]
    if (service, operation) in ANY_OBJECT:
        params = {"Key": "*", **params}
    action = action_of(service, operation)
    prefix, name = action.split(":", 1)
    spec = definitions()[prefix]
    types = [
        t["resource_type"] for t in spec["privileges"][name]["resource_types"] if t["resource_type"] and (service, operation) not in UNNAMED
    ]
    required = [t.rstrip("*") for t in types if t.endswith("*")]
    resources: list[str] = []
    for kind in required or [t.rstrip("*") for t in types]:
        if kind not in spec["resources"]:
            raise UnmappedCall(f"{action}: resource type {kind} has no ARN format in parliament's definitions")
        arns = _arns(spec["resources"][kind], params, call["region"], account)
        if kind in required and not arns:
            raise UnmappedCall(f"{service}:{operation}: the recorded parameters {sorted(params)} name no {kind}")
        resources += arns
    context = {key: params[param] for key, param in REQUEST_KEYS.get((prefix, name), {}).items() if param in params}
    for arn in resources:
        for key, value in tags(arn).items():
            context[f"aws:ResourceTag/{key}"] = value
    return Request(call["principal"], f"{service}:{operation}", action, tuple(resources) or ("*",), context)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

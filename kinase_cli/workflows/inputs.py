"""Sources a Fargate task can read: a local file goes to the frames bucket's inputs/ prefix first,
and an s3:// source must be one the task role may read, checked before any task starts.

The task role reads `inputs/*` of the frames bucket and the objects of the buckets allowed with
`kinase deploy --input-bucket` (the compute stack's ReadInputBuckets statement); anything else
would start a task that dies on a 403 while downloading.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from kinase_cli.aws.outputs import StackOutputs
from kinase_cli.aws.target import Target
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from worker.layout import INPUTS_PREFIX, input_key

_BUCKET_ARN = re.compile(r":s3:::([^/\"]+)/\*")


def prepare(tgt: Target, outputs: StackOutputs, source: str) -> str:
    """The source a Fargate task is given: a local file uploaded (its s3:// URI), an s3:// source checked."""
    if "://" not in source and Path(source).expanduser().is_file():
        return upload(tgt, outputs, Path(source).expanduser())
    if source.startswith("s3://"):
        check_readable(tgt, outputs, source)
    return source


def upload(tgt: Target, outputs: StackOutputs, path: Path) -> str:
    """Put `path` under inputs/ of the frames bucket at a key its content names (a progress bar on stderr),
    unless it is there already; returns its s3:// URI."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    bucket = outputs["FramesBucketName"]
    key = input_key(_sha256(path), path.name[-100:] or "video")
    uri = f"s3://{bucket}/{key}"
    if _exists(tgt, bucket, key):
        console.info(f"{path} is already at {uri} (same content): not uploaded again")
        return uri
    size = path.stat().st_size
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console.err) as progress:
        bar = progress.add_task(f"upload {path.name}", total=size)
        tgt.client("s3").upload_file(str(path), bucket, key, Callback=lambda sent: progress.advance(bar, sent))
    console.info(f"uploaded {path} to {uri} (expires with the bucket's inputs/ lifecycle rule)")
    return uri


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _exists(tgt: Target, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        tgt.client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def allowed_buckets(tgt: Target) -> set[str]:
    """Buckets besides the frames bucket that the deployed task role may read (ReadInputBuckets)."""
    body = tgt.client("cloudformation").get_template(StackName=tgt.stack_name("compute"))["TemplateBody"]
    template = body if isinstance(body, dict) else json.loads(body)
    found: set[str] = set()
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::IAM::Policy":
            continue
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == "ReadInputBuckets":
                found.update(_BUCKET_ARN.findall(json.dumps(statement.get("Resource"))))
    return found


def check_readable(tgt: Target, outputs: StackOutputs, uri: str) -> None:
    """One line, before any task starts, for an s3:// source the task role cannot read."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if bucket == outputs["FramesBucketName"]:
        if not key.startswith(INPUTS_PREFIX):
            raise KinaseError(
                f"the worker may read only {INPUTS_PREFIX} of the frames bucket, not {key or '(no key)'}",
                f"pass the local file as --source FILE (kinase uploads it to {INPUTS_PREFIX}), or copy it under s3://{bucket}/{INPUTS_PREFIX}",
            )
        return
    allowed = allowed_buckets(tgt)
    if bucket not in allowed:
        flags = " ".join(f"--input-bucket {b}" for b in sorted(allowed | {bucket}))  # the list replaces the last deploy's
        raise KinaseError(
            f"the worker may not read s3://{bucket}: the environment was not deployed with that bucket allowed",
            f"allow it with `kinase deploy {flags}{tgt.hint_flag()}`, or pass a local file as --source FILE",
        )

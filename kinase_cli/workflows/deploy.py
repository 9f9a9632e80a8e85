"""Deploying and destroying the stacks through the cdk CLI, with its output shown as progress.

`kinase deploy`, `kinase destroy` and `kinase demo` share these; the commands only parse flags,
confirm and print.
"""

from __future__ import annotations

import json

from infra import naming
from kinase_cli import paths
from kinase_cli.aws import outputs
from kinase_cli.aws.target import Target
from kinase_cli.local import cfn_gaps
from kinase_cli.runners import cdk
from kinase_cli.ui import console

BOOTSTRAP_HINT = "an account/region is bootstrapped once with `node_modules/.bin/cdk bootstrap aws://ACCOUNT/REGION`"


def deploy_stacks(tgt: Target) -> dict[str, str]:
    """`cdk deploy` of every stack for `tgt`; returns the outputs, also stored for later reads."""
    env, local = tgt.env, tgt.local
    outputs_file = paths.env_dir(env, local) / "cdk-outputs.json"
    outputs_file.unlink(missing_ok=True)
    args = ["deploy", "--all", "--require-approval", "never", "--outputs-file", str(outputs_file), "--progress", "events"]
    if local:
        args.append("--method=direct")  # moto returns no stack outputs through change sets
    console.step(f"deploying {', '.join(naming.stack_names(env))}")
    with Progress(f"cdk deploy ({env})") as on_line:
        cdk.run(tgt, args, on_line=on_line, what="cdk deploy", hint=BOOTSTRAP_HINT if not local else None)
    values = flatten(json.loads(outputs_file.read_text()) if outputs_file.exists() else {})
    if local:
        cfn_gaps.after_deploy(tgt, values)
    (paths.env_dir(env, local) / "outputs.json").write_text(json.dumps(values, indent=2, sort_keys=True))
    return values


def destroy_stacks(tgt: Target) -> list[str]:
    """Delete every stack of `tgt`'s environment, emptying the frames bucket first; returns the stack names."""
    env, local = tgt.env, tgt.local
    values = outputs.read(tgt)
    if values.get("FramesBucketName"):
        empty_bucket(tgt, values["FramesBucketName"])
    if local:
        cfn_gaps.before_destroy(tgt, values)
    args = ["destroy", "--all", "--force"]  # the command confirmed; cdk must not ask again
    with Progress(f"cdk destroy ({env})") as on_line:
        cdk.run(tgt, args, on_line=on_line, what="cdk destroy")
    (paths.env_dir(env, local) / "outputs.json").unlink(missing_ok=True)
    return naming.stack_names(env)


def flatten(by_stack: dict[str, dict[str, str]]) -> dict[str, str]:
    """cdk's outputs file ({stack: {key: value}}) as one mapping of the documented keys."""
    return {k: v for stack in by_stack.values() for k, v in stack.items() if k in naming.OUTPUTS}


class Progress:
    """cdk's output as progress on stderr: a live status line on a terminal, plain lines otherwise."""

    MARKS = ("✅", "❌", "rror", "failed", "Outputs:", "Stack ARN")

    def __init__(self, title: str):
        self.title = title
        self.status = console.err.status(title) if console.err.is_terminal else None

    def __enter__(self):
        if self.status:
            self.status.start()
        return self.on_line

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()

    def on_line(self, line: str) -> None:
        text = line.rstrip()
        if not text:
            return
        if self.status is None:
            console.err.print(text, markup=False, highlight=False)
            return
        self.status.update(f"{self.title}: {text.strip()[:100]}")
        if any(mark in text for mark in self.MARKS):
            console.err.print(text, markup=False, highlight=False)


def empty_bucket(tgt: Target, bucket: str) -> None:
    """CloudFormation cannot delete a bucket that still holds objects."""
    s3 = tgt.client("s3")
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except s3.exceptions.NoSuchBucket:
        pass

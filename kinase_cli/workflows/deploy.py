"""Deploying and destroying the stacks through the cdk CLI, with its output shown as progress.

`kinase deploy`, `kinase destroy` and `kinase demo` share these; the commands only parse flags,
confirm and print.

Deploy with GPU workers first checks the instance type against the region's zones and the account's
GPU quota (aws/gpu_capacity.py). Deploy on AWS: the region is checked for every service the stacks use, broadening security
changes are shown with the running cost and asked about (workflows/approval.py), and afterwards
the account, region, profile and allowed input buckets are recorded (aws/placement.py). The image
`kinase push-image` pinned is passed back in, so a redeploy keeps running it.

Destroy stops what runs first (ECS tasks, the fleet service, local workers of the environment)
and waits, so nothing writes into the bucket being emptied and ECS does not refuse to delete a
cluster with tasks; then the streams `kinase stream create` made are deleted and adopted camera
streams untagged (never deleted); then the stacks go; then every revision of the task-definition
families (the GPU ones included) is deregistered, since CloudFormation deletes only the revision it
registered. The summary says what was removed and what was kept, with how to remove it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra import naming
from kinase_cli import paths
from kinase_cli.aws import cost, gpu_capacity, outputs, placement
from kinase_cli.aws.target import LOCAL_ACCOUNT, Target
from kinase_cli.local import cfn_gaps
from kinase_cli.local import runs as local_runs
from kinase_cli.runners import cdk
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import plain
from kinase_cli.workflows import approval, fleet, streams
from worker.retry import error_code
from worker.settings import BY_FIELD as WORKER_SETTINGS

STOP_WAIT_SECONDS = 180  # the worker's stop timeout is 30 s; ECS may take a while to report STOPPED

BOOTSTRAP_HINT = "an account/region is bootstrapped once with `node_modules/.bin/cdk bootstrap aws://ACCOUNT/REGION`"


def deploy_stacks(
    tgt: Target, *, input_buckets: Sequence[str] | None = None, gpu_instance_type: str | None = None, yes: bool = False
) -> dict[str, str]:
    """`cdk deploy` of every stack for `tgt`; returns the outputs, also stored for later reads.

    `input_buckets`: buckets the worker may read sources from; `gpu_instance_type`: GPU workers on
    that instance type ("" for none); None keeps what the last deploy had.
    On AWS, broadening security changes are asked about first (`yes` answers for the operator).
    """
    env, local = tgt.env, tgt.local
    if not local:
        placement.check_services(tgt.region_name)
    last = placement.recorded(env, local)
    buckets = sorted(set(last.get("input_buckets", []) if input_buckets is None else input_buckets))
    gpu = (last.get("gpu_instance_type") if gpu_instance_type is None else gpu_instance_type) or None
    if gpu:
        gpu_capacity.preflight(tgt, gpu)
    context = deploy_context(tgt, buckets, gpu)
    if not local:
        approval.approve(tgt, context, yes=yes, cost_line=cost.estimate(tgt.region_name).text())
    outputs_file = paths.env_dir(env, local) / "cdk-outputs.json"
    outputs_file.unlink(missing_ok=True)
    # Approval happened above (kinase asks; cdk must not, and cannot without a terminal).
    args = ["deploy", "--all", "--require-approval", "never", "--outputs-file", str(outputs_file), "--progress", "events"]
    if local:
        args.append("--method=direct")  # moto returns no stack outputs through change sets
    console.step(f"deploying {', '.join(naming.stack_names(env))}")
    with Progress(f"cdk deploy ({env})", cdk.log_file(tgt, "deploy")) as on_line:
        cdk.run(tgt, args, context=context, on_line=on_line, what="cdk deploy", hint=BOOTSTRAP_HINT if not local else None)
    account = LOCAL_ACCOUNT if local else tgt.client("sts").get_caller_identity()["Account"]
    placement.record(env, account, tgt.region_name, tgt.profile, buckets, gpu, local=local)
    values = flatten(json.loads(outputs_file.read_text()) if outputs_file.exists() else {})
    if local:
        cfn_gaps.after_deploy(tgt, values)
    (paths.env_dir(env, local) / "outputs.json").write_text(json.dumps(values, indent=2, sort_keys=True))
    return values


def deploy_context(tgt: Target, input_buckets: Sequence[str], gpu_instance_type: str | None = None) -> dict[str, str]:
    """The app's context besides the environment: allowed input buckets, GPU workers, the pinned image digests."""
    context = {naming.CONTEXT_INPUT_BUCKETS: ",".join(input_buckets)} if input_buckets else {}
    # The local stack runs the worker as a process, never the image; and moto's CloudFormation cannot
    # update a cdk stack (its UpdateStack fails on the BootstrapVersion parameter), so a digest fed back
    # there would turn a no-op redeploy into a failed one.
    digest = None if tgt.local else pinned_digest(tgt, naming.worker_family(tgt.env))
    if digest:
        context[naming.CONTEXT_IMAGE_DIGEST] = digest
    if gpu_instance_type:
        context[naming.CONTEXT_GPU_INSTANCE_TYPE] = gpu_instance_type
        gpu_digest = pinned_digest(tgt, naming.gpu_family(tgt.env))
        if gpu_digest:
            context[naming.CONTEXT_GPU_IMAGE_DIGEST] = gpu_digest
    return context


def pinned_digest(tgt: Target, family: str) -> str | None:
    """The digest the newest revision of `family` runs (pinned by `kinase push-image`); None before any push."""
    ecs = tgt.client("ecs")
    try:
        definition = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    except Exception as exc:  # botocore ClientError: no such family yet
        if error_code(exc) in ("ClientException", "InvalidParameterException"):
            return None
        raise
    for container in definition.get("containerDefinitions", []):
        image = container.get("image", "")
        if "@sha256:" in image:
            return image.rsplit("@", 1)[1]
    return None


@dataclass(frozen=True)
class DestroyPlan:
    """The environment's streams besides the stack's own, known before the operator is asked: those
    `kinase stream create` made are deleted; adopted camera streams are untagged and kept."""

    streams: list[str]
    adopted: list[str]

    def question(self, stack_names: Sequence[str]) -> str:
        lines = [f"Delete {', '.join(stack_names)} and the frames, results and video they hold?"]
        if self.streams:
            lines.append(f"  streams to delete ({len(self.streams)}): {', '.join(self.streams)}")
        if self.adopted:
            lines.append(f"  adopted streams to untag and keep ({len(self.adopted)}): {', '.join(self.adopted)}")
        return "\n".join(lines)


def destroy_plan(tgt: Target) -> DestroyPlan:
    """The streams of the environment (workflows/streams.py decides which are): created ones, named with
    its prefix and not adopted, to delete; adopted ones to untag. The stack's own stream goes with its stack."""
    rows = streams.listing(tgt)
    prefix, own = naming.stream_prefix(tgt.env), naming.stream_name(tgt.env)
    adopted = [r["name"] for r in rows if r["adopted"] or not r["name"].startswith(prefix)]
    return DestroyPlan(streams=[r["name"] for r in rows if r["name"] not in adopted and r["name"] != own], adopted=adopted)


def destroy_stacks(tgt: Target, plan: DestroyPlan | None = None) -> dict:
    """Stop what runs, delete the created streams and untag the adopted ones (`plan`, default: as they are
    now), delete every stack of `tgt`'s environment and the task-definition revisions left behind;
    returns the summary: what was removed and what was kept."""
    env, local = tgt.env, tgt.local
    plan = plan or destroy_plan(tgt)
    values = outputs.read(tgt)
    stop_workers(tgt, values)
    deleted, untagged = _release_streams(tgt, plan)
    kept = retained_buckets(tgt)
    if values.get("FramesBucketName"):
        empty_bucket(tgt, values["FramesBucketName"])
    if local:
        cfn_gaps.before_destroy(tgt, values)
    args = ["destroy", "--all", "--force"]  # the command confirmed; cdk must not ask again
    with Progress(f"cdk destroy ({env})", cdk.log_file(tgt, "destroy")) as on_line:
        cdk.run(tgt, args, on_line=on_line, what="cdk destroy")
    (paths.env_dir(env, local) / "outputs.json").unlink(missing_ok=True)
    # CloudFormation deletes the revision it registered; `push-image` and `fleet up` registered others.
    families = [naming.worker_family(env), naming.fleet_family(env), naming.gpu_family(env), naming.gpu_fleet_family(env)]
    deregistered = deregister_revisions(tgt, families)
    flags = tgt.hint_flag().replace(" --local", "").replace(f" --env {env}", "")
    if tgt.local:  # the aws CLI would go to AWS without it; `kinase local down` drops the bucket too
        flags += f" --endpoint-url {tgt.endpoint_for('s3')}"
    return {
        "removed": {
            "stacks": naming.stack_names(env),
            "streams": deleted,
            "task_definition_revisions": deregistered,
            "task_definition_families": families,
        },
        "kept": {
            "streams": [{"name": name, "why": "adopted: untagged, never deleted"} for name in untagged],
            "buckets": [
                {
                    "name": bucket,
                    "why": "the frames bucket's access logs, retained so the audit trail outlives the stacks (objects expire after 90 days)",
                    "remove_with": f"aws s3 rb s3://{bucket} --force{flags}",
                }
                for bucket in kept
            ],
        },
    }


def _release_streams(tgt: Target, plan: DestroyPlan) -> tuple[list[str], list[str]]:
    """Delete the created streams, untag the adopted ones (workflows/streams.py's `remove`, which also drops
    their leases); the names deleted and untagged. One gone already is skipped with a warning."""
    deleted, untagged = [], []
    for name in plan.streams + plan.adopted:
        try:
            result = streams.remove(tgt, name)
        except KinaseError as exc:
            console.warn(f"stream {name}: {exc.line()}")
            continue
        (deleted if result["deleted"] else untagged).append(result["name"])
    if deleted or untagged:
        console.info(f"deleted {len(deleted)} stream(s), untagged {len(untagged)} adopted stream(s)")
    return deleted, untagged


def stop_workers(tgt: Target, values: dict[str, str]) -> None:
    """Stop the environment's ECS tasks (the fleet scaled to zero first) and its local workers; wait for them."""
    if values.get("ClusterName"):
        _stop_tasks(tgt, values)
    if tgt.local and (stopped := fleet.stop_local_fleet(tgt.env)):
        console.info(f"stopped {len(stopped)} local fleet worker(s)")
    _stop_local_workers(values)


def _stop_tasks(tgt: Target, values: dict[str, str]) -> None:
    ecs = tgt.client("ecs")
    cluster = values["ClusterName"]
    for service in [values[k] for k in ("FleetServiceName", "GpuFleetServiceName") if values.get(k)]:
        try:
            ecs.update_service(cluster=cluster, service=service, desiredCount=0)
        except Exception as exc:  # botocore ClientError
            if error_code(exc) not in ("ServiceNotFoundException", "ServiceNotActiveException", "ClusterNotFoundException"):
                raise
    try:
        pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus="RUNNING")
        arns = [arn for page in pages for arn in page["taskArns"]]
    except Exception as exc:  # botocore ClientError
        if error_code(exc) == "ClusterNotFoundException":
            return
        raise
    if not arns:
        return
    console.step(f"stopping {len(arns)} task(s) on {cluster} before deleting anything")
    for arn in arns:
        ecs.stop_task(cluster=cluster, task=arn, reason="kinase destroy")
    waiter = ecs.get_waiter("tasks_stopped")
    for start in range(0, len(arns), 100):
        waiter.wait(cluster=cluster, tasks=arns[start : start + 100], WaiterConfig={"Delay": 6, "MaxAttempts": STOP_WAIT_SECONDS // 6})
    console.info(f"stopped {len(arns)} task(s)")


def _stop_local_workers(values: dict[str, str]) -> None:
    """Local workers (`run-task --local`) writing to this environment's bucket or queue: SIGTERM, as ECS stops a task."""
    mine = {values.get("FramesBucketName"), values.get("ResultsQueueUrl")} - {None}

    def running() -> list[dict]:
        return [
            r
            for r in local_runs.records()
            if r.get("lastStatus") == "RUNNING"
            and mine & {r.get("settings", {}).get(WORKER_SETTINGS[k].name) for k in ("bucket", "queue_url")}
        ]

    workers = running()
    if not workers:
        return
    console.step(f"stopping {len(workers)} local worker(s) of this environment before deleting anything")
    for record in workers:
        try:
            os.kill(int(record["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while running():
        if time.monotonic() > deadline:
            pids = ", ".join(str(r["pid"]) for r in running())
            raise KinaseError(
                f"local worker(s) {pids} did not stop within {STOP_WAIT_SECONDS} s; nothing was deleted", "stop them, then destroy again"
            )
        time.sleep(0.5)
    console.info(f"stopped {len(workers)} local worker(s)")


def retained_buckets(tgt: Target) -> list[str]:
    """Buckets the storage stack keeps on delete (RemovalPolicy.RETAIN): the access-logs bucket."""
    try:
        resources = tgt.client("cloudformation").describe_stack_resources(StackName=tgt.stack_name("storage"))["StackResources"]
    except Exception as exc:  # botocore ClientError: the stack is gone
        if error_code(exc) == "ValidationError":
            return []
        raise
    return [
        r["PhysicalResourceId"]
        for r in resources
        if r.get("LogicalResourceId", "").startswith("AccessLogsBucket") and r.get("PhysicalResourceId")
    ]


def deregister_revisions(tgt: Target, families: Sequence[str]) -> int:
    """Deregister the ACTIVE revisions of `families` (push-image registers them outside CloudFormation)."""
    ecs = tgt.client("ecs")
    count = 0
    for family in families:
        pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE")
        for arn in (a for page in pages for a in page["taskDefinitionArns"]):
            if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family:
                ecs.deregister_task_definition(taskDefinition=arn)
                count += 1
    return count


def flatten(by_stack: dict[str, dict[str, str]]) -> dict[str, str]:
    """cdk's outputs file ({stack: {key: value}}) as one mapping of the documented keys."""
    return {k: v for stack in by_stack.values() for k, v in stack.items() if k in naming.OUTPUTS}


class Progress:
    """cdk's output summarised on stderr: one line per stack and its outcome, and cdk's errors.

    On a terminal a status line shows the step in progress. Everything cdk printed is kept in
    `cdk.log_file` (its path is printed at the end); `kinase --verbose` streams every line instead.
    Lines are cdk's (stack names, resource names): shown as plain text, never markup.
    """

    MARKS = ("✅", "❌", "rror", "failed")

    def __init__(self, title: str, log: Path | None = None):
        self.title = title
        self.log = log
        self.verbose = cdk.verbose()
        self.status = console.err.status(title) if console.err.is_terminal and not self.verbose else None

    def __enter__(self):
        if self.status:
            self.status.start()
        return self.on_line

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()
        if self.log is not None:
            console.err.print(plain(f"full cdk output: {self.log}", style="dim"), highlight=False, soft_wrap=True)

    def on_line(self, line: str) -> None:
        text = line.rstrip()
        if not text:
            return
        if self.verbose:
            console.err.print(plain(text), highlight=False, soft_wrap=True)
            return
        if self.status is not None:
            self.status.update(plain(f"{self.title}: {text.strip()[:100]}"))
        if any(mark in text for mark in self.MARKS):
            console.err.print(plain(text.strip()), highlight=False, soft_wrap=True)


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

"""Every AWS call the worker and the CLI make, judged by the IAM policies that would judge it on AWS.

moto cannot enforce IAM faithfully (DESIGN.md, "Facts found this round": it checks operation names
instead of IAM actions and most services against `*`), so this module runs the operator's commands
on the local stack with every call recorded (KINASE_RECORD_CALLS, worker/callrecord.py): deploy,
run-task/status/logs/stop-task on the Fargate path (moto's ECS), a one-off worker on a Kinesis Video
stream and on an uploaded file, watch with --save, stream create/adopt/put/rm, a fleet worker with
leases, status, logs, stream ls/describe, rules apply/show, notify add/ls/rm, dlq ls/redrive/purge, push-image on the AWS path (the fake docker's push puts
the manifest with the operator's credentials; the families pinned, the fleet rolled), a refused
`deploy --gpu` on the AWS path (the GPU pre-flight's EC2 and Service Quotas reads, then the security
diff, whose broadening change is refused without a terminal), destroy. What the local stack does in
AWS's place (cfn_gaps) is recorded as principal `local-stack` and judged by no policy. Each call becomes an IAM
request (action and ARN from parliament's IAM definitions, support/iam_actions.py) and is evaluated
(support/iam_policy.py): the worker's against the deployed task role's policy, the CLI's against
the operator policy documented in docs/OPERATIONS.md ("Operator permissions"). A denied call fails,
and so does a grant no call uses, unless UNUSED_GRANTS says why AWS needs it anyway.

Not recorded, and why: a completed `deploy` on the AWS path. Run here against the deployed environment,
`deploy --yes` finds no broadening change, then the cdk CLI's own deploy fails on the moto server (its
AWS SDK reads an HTML answer: "XML parse error: mismatched tags <html>"; the local path deploys with
--method=direct). The one boto3 call it would add to the refused GPU deploy is sts:GetCallerIdentity
(EXTRA, with its reason); its stack calls are the cdk CLI's, under the cdk roles, which no boto3 hook sees.
`docker push`'s layer uploads (the fake docker has no layers: EXTRA). `kinase demo` is not run: its calls are those of local up, deploy, push-image --source-tree (the local stack's
registration), stream put, a local one-off worker and watch, all recorded here, plus the web view's
cloudwatch:GetMetricData, which it makes only when a browser asks for metrics (as `watch --web` does),
and which this run does not record either (EXTRA grants it). Not run here either:
`fleet scale` on AWS (ECS UpdateService and Application Auto Scaling, as `fleet up`), `bootstrap` (an
administrator's, once per account and region).

The environment is the module's own (`--env iame2e`), so nothing else runs in it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import naming
from kinase_cli.aws.target import LOCAL_ACCOUNT, LOCAL_REGION
from kinase_cli.workflows.samples import shapes_video
from support.cli import kinase
from support.iam_actions import Request, read, request
from support.iam_operator import EXTRA, concrete, documented
from support.iam_policy import evaluate, resolver, statements_of
from support.ops import aws_env, fake_docker, remove_images
from support.poll import until
from support.worker_stack import SHAPES_ONNX
from worker import callrecord

pytestmark = pytest.mark.e2e

ENV = "iame2e"
LOCAL = ("--local", "--env", ENV)
FRAMES, FPS, GOP = 20, 10, 10
ADOPTED = "iam-lobby-camera"  # a camera stream outside the environment's prefix, adopted by its tag
# camera_offline after 2 s without media: the fleet's streams go quiet after their clip, so its worker publishes an event
FLEET = (
    "--model",
    str(SHAPES_ONNX),
    "-e",
    "KINASE_IMGSZ=320",
    "-e",
    "KINASE_START=EARLIEST",
    "-e",
    "KINASE_METRICS_INTERVAL=60",
    "-e",
    "KINASE_CAMERA_OFFLINE_S=2",
)
WORKER = (*FLEET, "--imgsz", "320")
RULES = """\
schema: kinase.rules/1
streams:
  "*":
    lines:
      - name: door
        points: [[0.5, 0.0], [0.5, 1.0]]
        in_side: [0.9, 0.5]
"""

# (statement Sid, action) of the task role that no recorded call uses, and why AWS needs it.
UNUSED_GRANTS = {
    ("FindCheckpoint", "s3:ListBucket"): "no call: with it S3 answers GetObject of a missing checkpoint with NoSuchKey instead of "
    "AccessDenied (S3 API reference, GetObject, 'Permissions'), which the worker reads as 'no checkpoint yet'",
    ("Leases", "dynamodb:DeleteItem"): "the worker deletes the lease of a stream deleted under it once its reader finds the stream "
    "gone (worker/fleet/leases.py); `stream rm` deletes the lease itself, and the run waits for no reader to find a deleted stream",
    ("FindRules", "s3:ListBucket"): "no call: as FindCheckpoint, so that rules never applied read as NoSuchKey, not AccessDenied",
}


@dataclass
class Recording:
    calls: list[dict]
    task_role: list[dict]  # the deployed task role's statements, intrinsics resolved
    tags: dict[str, dict[str, str]]  # stream name -> its tags, while the streams existed
    outputs: dict
    path: Path

    def requests(self, principal: str) -> list[Request]:
        """The principal's calls as IAM requests, in the order made: after a stream's DeleteStream or UntagStream
        (by anyone, until it is created or tagged again), a call on it finds no tags, as on AWS an
        aws:ResourceTag condition then fails."""
        untagged: set[str] = set()

        def tags(arn: str) -> dict[str, str]:
            if ":kinesisvideo:" not in arn:
                return {}
            name = arn.split(":", 5)[5].split("/")[1]
            return {} if name in untagged else self.tags.get(name, {})

        requests = []
        for c in self.calls:
            if c["principal"] == principal:
                requests.append(request(c, account=LOCAL_ACCOUNT, tags=tags))
            if c["service"] == "kinesisvideo" and c["operation"] in ("DeleteStream", "UntagStream", "CreateStream", "TagStream"):
                name = c["params"].get("StreamName") or c["params"]["StreamARN"].split(":", 5)[5].split("/")[1]
                (untagged.add if c["operation"] in ("DeleteStream", "UntagStream") else untagged.discard)(name)
        return requests


def _deployed_task_role(media) -> list[dict]:
    cfn = media.client("cloudformation")
    stack = naming.stack_name(ENV, "compute")
    body = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    exports = {e["Name"]: e["Value"] for page in cfn.get_paginator("list_exports").paginate() for e in page["Exports"]}
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources if "LogicalResourceId" in r}  # moto leaves some out
    resolve = resolver(region=LOCAL_REGION, account=LOCAL_ACCOUNT, exports=exports, physical=physical)
    return statements_of(template, "TaskRole", resolve)


@pytest.fixture(scope="module")
def recording(local_stack, media, tmp_path_factory) -> Recording:
    work = tmp_path_factory.mktemp("iam")
    path = work / "calls.jsonl"
    clip = work / "clip.mp4"
    shapes_video(clip, frames=FRAMES, fps=FPS, size=(320, 240), gop=GOP, seed=23)

    def attempt(*args: str, timeout: float = 300, on_aws: bool = False, extra: dict | None = None):
        """`kinase ARGS` recorded; `on_aws`: the AWS code path (no --local) against the local stack's moto server."""
        where, env = (("--env", ENV), aws_env()) if on_aws else (LOCAL, {})
        return kinase(*args, *where, env={**env, **(extra or {}), callrecord.VARIABLE: str(path)}, timeout=timeout)

    def run(*args: str, timeout: float = 300, on_aws: bool = False, extra: dict | None = None) -> str:
        proc = attempt(*args, timeout=timeout, on_aws=on_aws, extra=extra)
        assert proc.returncode == 0, f"kinase {' '.join(args)}: {proc.stderr[-3000:]}"
        return proc.stdout

    def fleet_status() -> dict:
        return json.loads(run("fleet", "status", "--json"))["data"]

    run("deploy", timeout=900)
    outputs: dict = {}
    try:
        # the local stack's own registration of the source tree (on AWS: docker push), so not recorded
        kinase("push-image", *LOCAL, "--source-tree", check=True, timeout=300)
        outputs = json.loads(run("outputs", "--json"))["data"]
        stream = outputs["StreamName"]
        # the Fargate path: RunTask, the task's state, its logs, StopTask (moto's ECS runs nothing)
        task = json.loads(run("run-task", "--stream", stream, "--json", on_aws=True))["data"]["tasks"][0]["task_arn"]
        run("status", on_aws=True)
        run("logs", on_aws=True)
        run("stop-task", task, on_aws=True)
        # a one-off worker on the stack's stream, and one on a file `run-task` uploads under inputs/
        run("stream", "put", str(clip), "--stream", stream)
        run("run-task", "--stream", stream, *WORKER, "-e", f"KINASE_MAX_FRAMES={FRAMES}", timeout=600)
        run("run-task", "--source", str(clip), *WORKER, timeout=600)
        run("watch", "--count", str(2 * FRAMES), "--idle-timeout", "120", "--save", str(work / "frames"), "--json", timeout=600)
        # the fleet: a created stream and an adopted one, leased and read by one worker
        created = json.loads(run("stream", "create", "cam1", "--json"))["data"]["name"]
        media.kvs.create_stream(StreamName=ADOPTED, DataRetentionInHours=1)
        run("stream", "adopt", ADOPTED)
        run("fleet", "up", "--workers", "1", *FLEET, timeout=600)
        for name in (created, ADOPTED):
            media.put(name, clip)
        until(
            lambda: all(s["checkpoint_fragment"] for s in fleet_status()["streams"] if s["name"] in (created, ADOPTED)),
            lambda: f"the fleet worker checkpoints both streams: {fleet_status()}",
            timeout=600,
            every=2,
        )
        seen = Counter(m["stream_name"] for m in media.messages(outputs["ResultsQueueUrl"], expect=3 * FRAMES, wait=300))
        assert seen[created] >= FRAMES and seen[ADOPTED] >= FRAMES, seen
        until(
            lambda: (
                media.sqs.get_queue_attributes(QueueUrl=outputs["EventsQueueUrl"], AttributeNames=["ApproximateNumberOfMessages"])[
                    "Attributes"
                ]["ApproximateNumberOfMessages"]
                != "0"
            ),
            "the fleet worker publishes camera_offline for its quiet streams",
            timeout=300,
            every=2,
        )
        tags = {s: media.kvs.list_tags_for_stream(StreamName=s)["Tags"] for s in (stream, created, ADOPTED)}
        run("status")
        run("logs")
        run("stream", "ls")
        run("stream", "describe", created)
        run("fleet", "down", timeout=600)
        run("stream", "rm", created, "--yes")
        run("stream", "rm", ADOPTED, "--yes")
        # detection rules, stored as versions in the frames bucket
        (work / "rules.yaml").write_text(RULES)
        run("rules", "apply", str(work / "rules.yaml"))
        run("rules", "show")
        # notifications: a team's queue subscribed to the events topic with a filter, listed, removed
        sqs = media.client("sqs")
        team = sqs.create_queue(QueueName="iam-team-events")["QueueUrl"]
        team_arn = sqs.get_queue_attributes(QueueUrl=team, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        run("notify", "add", f"sqs:{team_arn}", "--type", "line_crossed")
        run("notify", "ls")
        run("notify", "rm", f"sqs:{team_arn}", "--yes")
        sqs.delete_queue(QueueUrl=team)
        # the dead-letter queue: a letter listed and moved back to the results queue, another purged
        sqs.send_message(QueueUrl=outputs["DeadLetterQueueUrl"], MessageBody="not a frame message")
        run("dlq", "ls")
        run("dlq", "redrive", "--yes")
        sqs.send_message(QueueUrl=outputs["DeadLetterQueueUrl"], MessageBody="not a frame message either")
        run("dlq", "purge", "--yes")
        # push-image on AWS's path: the fake docker's push puts the manifest into ECR with the operator's
        # credentials, as `docker push` does (ecr:PutImage); the families are pinned and the fleet rolled
        fake_docker(work / "bin")
        docker = {"PATH": f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(work / "docker.jsonl")}
        run("push-image", "--tag", "iam-push", on_aws=True, extra=docker)
        # deploy --gpu on AWS's path: the pre-flight (EC2 instance types and offerings, the Service Quotas read,
        # which moto answers NoSuchResourceException, so kinase warns and goes on), then the security diff
        # (cdk's own calls, under the cdk roles), whose broadening change is refused without a terminal
        gpu = attempt("deploy", "--gpu", "--instance-type", "g4dn.xlarge", on_aws=True, timeout=900)
        assert gpu.returncode != 0 and "not confirmed: no terminal to ask on" in gpu.stderr, gpu.stderr[-3000:]
        task_role = _deployed_task_role(media)
    finally:
        kinase("fleet", "down", *LOCAL, timeout=600)
        if any(s["StreamName"] == ADOPTED for s in media.kvs.list_streams()["StreamInfoList"]):
            media.kvs.delete_stream(StreamARN=media.kvs.describe_stream(StreamName=ADOPTED)["StreamInfo"]["StreamARN"])
        if outputs:
            remove_images(outputs)  # pushed by push-image --source-tree; ECR deletes no repository that holds images
        run("destroy", "--yes", timeout=900)
    return Recording(read(path), task_role, tags, outputs, path)


def test_the_unused_grant_check_names_a_grant_no_call_uses(recording):
    queue = next(s["Resource"] for s in recording.task_role if s["Sid"] == "SendResults")
    wider = [*recording.task_role, {"Sid": "Purge", "Effect": "Allow", "Action": ["sqs:PurgeQueue", "sqs:SendMessage"], "Resource": queue}]
    unused = _grants(wider) - _used(wider, recording.requests("worker"))
    assert unused == {*UNUSED_GRANTS, ("Purge", "sqs:PurgeQueue")}


def _kept(recording: Recording) -> str:
    """A copy of the recording outside pytest's temporary directories (which other runs rotate), for the hint."""
    fd, path = tempfile.mkstemp(prefix="kinase-iam-calls-", suffix=".jsonl")
    with os.fdopen(fd, "w") as out:
        out.write(recording.path.read_text())
    return f"regenerate with: .venv/bin/python scripts/operator_policy.py {path} --write"


def _denied(statements: list[dict], requests: list[Request]) -> list[str]:
    return sorted({f"{r.call} -> {r.action} on {', '.join(r.resources)}" for r in requests if not evaluate(statements, r).allowed})


def _used(statements: list[dict], requests: list[Request]) -> set[tuple[str, str]]:
    return {(sid, r.action) for r in requests for sid in evaluate(statements, r).by}


def _grants(statements: list[dict]) -> set[tuple[str, str]]:
    return {(s["Sid"], a) for s in statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}


def test_the_recording_holds_every_flow(recording):
    """Both principals, every service the pipeline uses, PutMedia and the media plane's GetMedia."""
    calls = {(c["principal"], f"{c['service']}:{c['operation']}") for c in recording.calls}
    for expected in [
        ("worker", "kinesisvideo:GetDataEndpoint"),
        ("worker", "kinesisvideo:GetMedia"),
        ("worker", "s3:PutObject"),
        ("worker", "s3:GetObject"),
        ("worker", "sqs:SendMessageBatch"),
        ("worker", "dynamodb:UpdateItem"),
        ("cli", "kinesisvideo:PutMedia"),
        ("cli", "kinesisvideo:TagStream"),
        ("cli", "sqs:ReceiveMessage"),
        ("cli", "cloudformation:DescribeStacks"),
        ("cli", "ecr:GetAuthorizationToken"),
        ("cli", "ecr:PutImage"),
        ("cli", "ecs:RegisterTaskDefinition"),
        ("cli", "ecs:UpdateService"),
        ("cli", "ec2:DescribeInstanceTypeOfferings"),
        ("cli", "servicequotas:GetServiceQuota"),
        ("cli", "sqs:PurgeQueue"),
        ("cli", "sns:Subscribe"),
        ("cli", "sns:Unsubscribe"),
    ]:
        assert expected in calls, (expected, sorted(calls))


def test_every_worker_call_is_allowed_by_the_task_role(recording):
    assert _denied(recording.task_role, recording.requests("worker")) == []


def test_a_stream_deleted_under_the_fleet_is_denied_to_the_task_role_not_found(recording):
    """Why the fleet reads AccessDeniedException as "no longer ours" (worker/fleet/main.py, StreamPipelines._exists): the
    task role reads streams only through an aws:ResourceTag condition, and a deleted stream has no tags, so on AWS
    its DescribeStream is denied (IAM User Guide, "IAM JSON policy elements: Condition operators": a condition on a
    key the request lacks is false), never answered ResourceNotFoundException."""
    created = next(name for name in recording.tags if name not in (ADOPTED, recording.outputs["StreamName"]))
    describe = {"principal": "worker", "service": "kinesisvideo", "operation": "DescribeStream", "region": LOCAL_REGION}
    describe["params"] = {"StreamName": created}
    rm = next(i for i, c in enumerate(recording.calls) if c["operation"] == "DeleteStream" and created in json.dumps(c["params"]))
    while_leased = Recording([*recording.calls[:rm], describe], recording.task_role, recording.tags, recording.outputs, recording.path)
    after_rm = Recording([*recording.calls, describe], recording.task_role, recording.tags, recording.outputs, recording.path)
    before, after = while_leased.requests("worker")[-1], after_rm.requests("worker")[-1]
    assert evaluate(recording.task_role, before).allowed, before
    assert "aws:ResourceTag/" + naming.ENV_TAG not in after.context
    assert evaluate(recording.task_role, after).allowed is False, after


def test_every_task_role_grant_is_used_or_needed_on_aws(recording):
    used = _used(recording.task_role, recording.requests("worker"))
    unused = _grants(recording.task_role) - used
    assert unused == set(UNUSED_GRANTS), {"unused": sorted(unused), "used": sorted(used)}


def test_the_task_role_check_names_the_call_a_missing_grant_denies(recording):
    without = [s for s in recording.task_role if s["Sid"] != "SendResults"]
    denied = _denied(without, recording.requests("worker"))
    assert denied and all(d.startswith("sqs:SendMessageBatch -> sqs:SendMessage on arn:aws:sqs:") for d in denied), denied


def _operator_statements(recording: Recording) -> list[dict]:
    policy = documented()
    assert policy.get("Statement"), f"docs/OPERATIONS.md shows no operator policy; {_kept(recording)}"
    return concrete(policy, region=LOCAL_REGION, account=LOCAL_ACCOUNT)


def test_the_documented_operator_policy_allows_every_cli_call(recording):
    statements = _operator_statements(recording)
    denied = _denied(statements, recording.requests("cli"))
    assert denied == [], _kept(recording)


def test_every_documented_operator_statement_is_used_or_explained(recording):
    statements = _operator_statements(recording)
    explained = {statement["Sid"] for statement, _ in EXTRA}
    unused = {(sid, action) for sid, action in _grants(statements) - _used(statements, recording.requests("cli")) if sid not in explained}
    assert unused == set(), _kept(recording)

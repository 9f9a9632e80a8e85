"""The IAM check of the recorded calls (support/iam_*.py, worker/callrecord.py) on calls and policies made here.

The end-to-end check (tests/e2e/test_iam_calls.py) judges real runs; these show that each part can
refuse: an operation authorized by another action's name, a missing grant, a Deny, a condition,
an operator or call the checker does not know.
"""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from support.iam_actions import UNKNOWN, UnmappedCall, request
from support.iam_operator import EXTRA, _general, concrete, generate
from support.iam_policy import Unsupported, evaluate, resolver, statements_of
from worker import aws, callrecord

ACCOUNT, REGION = "123456789012", "eu-west-1"
QUEUE = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/kinase-dev-results"
STREAM_ARN = f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/kinase-dev-video/1700000000000"


def call(service: str, operation: str, principal: str = "worker", **params) -> dict:
    return {"principal": principal, "service": service, "operation": operation, "region": REGION, "params": params}


def allow(sid: str, action, resource, **condition) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    return {**statement, "Condition": condition} if condition else statement


def test_batch_and_list_operations_are_judged_by_the_action_aws_checks():
    """SQS: SendMessageBatch needs sqs:SendMessage; S3: ListObjectsV2 needs s3:ListBucket on the bucket, with s3:prefix."""
    send = request(call("sqs", "SendMessageBatch", QueueUrl=QUEUE), account=ACCOUNT)
    assert (send.action, send.resources) == ("sqs:SendMessage", (f"arn:aws:sqs:{REGION}:{ACCOUNT}:kinase-dev-results",))
    listing = request(call("s3", "ListObjectsV2", Bucket="frames", Prefix="checkpoints/"), account=ACCOUNT)
    assert (listing.action, listing.resources, listing.context) == (
        "s3:ListBucket",
        ("arn:aws:s3:::frames",),
        {"s3:prefix": "checkpoints/"},
    )
    get = request(call("s3", "GetObject", Bucket="frames", Key="checkpoints/a.json"), account=ACCOUNT)
    assert get.resources == ("arn:aws:s3:::frames/checkpoints/a.json",)


def test_kinesis_video_calls_name_the_stream_by_arn_or_by_name():
    media = request(call("kinesisvideo", "GetMedia", StreamARN=STREAM_ARN), account=ACCOUNT)
    assert (media.action, media.resources) == ("kinesisvideo:GetMedia", (STREAM_ARN,))
    put = request(call("kinesisvideo", "PutMedia", principal="cli", StreamName="cam"), account=ACCOUNT)
    assert put.resources == (f"arn:aws:kinesisvideo:{REGION}:{ACCOUNT}:stream/cam/{UNKNOWN}",)
    tagged = request(call("kinesisvideo", "DescribeStream", StreamName="cam"), account=ACCOUNT, tags=lambda arn: {"kinase:env": "dev"})
    assert tagged.context == {"aws:ResourceTag/kinase:env": "dev"}
    assert request(call("kinesisvideo", "ListStreams"), account=ACCOUNT).resources == ("*",)


def test_a_task_definition_is_named_by_its_family_when_registered():
    registered = request(call("ecs", "RegisterTaskDefinition", principal="cli", family="kinase-dev-worker"), account=ACCOUNT)
    assert registered.resources == (f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/kinase-dev-worker:{UNKNOWN}",)


def test_a_call_without_an_iam_action_or_resource_is_refused_not_guessed():
    with pytest.raises(UnmappedCall, match="s3:SelectEverything"):
        request(call("s3", "SelectEverything", Bucket="b"), account=ACCOUNT)
    with pytest.raises(UnmappedCall, match="name no object"):
        request(call("s3", "GetObject", Bucket="b"), account=ACCOUNT)


def test_allow_needs_action_resource_and_every_condition():
    statements = [
        allow("Send", "sqs:SendMessage", f"arn:aws:sqs:*:{ACCOUNT}:kinase-dev-*"),
        allow("Find", "s3:ListBucket", "arn:aws:s3:::frames", StringLike={"s3:prefix": ["checkpoints/*"]}),
        allow(
            "Adopted", ["kinesisvideo:GetMedia"], "arn:aws:kinesisvideo:*:*:stream/*/*", StringEquals={"aws:ResourceTag/kinase:env": "dev"}
        ),
    ]
    send = request(call("sqs", "SendMessageBatch", QueueUrl=QUEUE), account=ACCOUNT)
    assert evaluate(statements, send).by == ("Send",)
    other_queue = request(call("sqs", "SendMessage", QueueUrl=QUEUE.replace("kinase-dev", "other")), account=ACCOUNT)
    assert not evaluate(statements, other_queue).allowed
    assert evaluate(statements, request(call("s3", "ListObjectsV2", Bucket="frames", Prefix="checkpoints/x"), account=ACCOUNT)).allowed
    assert not evaluate(statements, request(call("s3", "ListObjectsV2", Bucket="frames", Prefix="frames/"), account=ACCOUNT)).allowed
    assert not evaluate(statements, request(call("s3", "ListObjectsV2", Bucket="frames"), account=ACCOUNT)).allowed  # no prefix: no match
    media = call("kinesisvideo", "GetMedia", StreamARN=STREAM_ARN)
    assert evaluate(statements, request(media, account=ACCOUNT, tags=lambda arn: {"kinase:env": "dev"})).allowed
    assert not evaluate(statements, request(media, account=ACCOUNT, tags=lambda arn: {"kinase:env": "prod"})).allowed
    assert not evaluate(statements, request(media, account=ACCOUNT)).allowed


def test_an_explicit_deny_wins_and_not_action_excludes():
    send = request(call("sqs", "SendMessage", QueueUrl=QUEUE), account=ACCOUNT)
    everything = allow("All", "sqs:*", "*")
    assert evaluate([everything], send).allowed
    deny = {"Sid": "NoSend", "Effect": "Deny", "Action": "sqs:Send*", "Resource": "*"}
    assert evaluate([everything, deny], send) == evaluate([deny, everything], send)
    assert evaluate([everything, deny], send).by == ("NoSend",) and not evaluate([everything, deny], send).allowed
    assert not evaluate([{"Sid": "Rest", "Effect": "Allow", "NotAction": "sqs:SendMessage", "Resource": "*"}], send).allowed


def test_an_operator_or_element_the_checker_does_not_evaluate_fails_instead_of_allowing():
    send = request(call("sqs", "SendMessage", QueueUrl=QUEUE), account=ACCOUNT)
    with pytest.raises(Unsupported, match="NumericLessThan"):
        evaluate([allow("N", "sqs:SendMessage", "*", NumericLessThan={"aws:MultiFactorAuthAge": "3600"})], send)
    with pytest.raises(Unsupported, match="NotResource"):
        evaluate([{"Sid": "X", "Effect": "Allow", "Action": "sqs:SendMessage", "NotResource": "x", "Resource": "*"}], send)


def test_a_role_policy_is_read_from_the_template_with_intrinsics_resolved():
    template = {
        "Resources": {
            "TaskRole30FC0FBB": {"Type": "AWS::IAM::Role"},
            "TaskRoleDefaultPolicy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "Roles": [{"Ref": "TaskRole30FC0FBB"}],
                    "PolicyDocument": {
                        "Statement": [
                            allow(
                                "SendResults",
                                "sqs:SendMessage",
                                {"Fn::ImportValue": "kinase-dev-storage:ResultsQueueArn"},
                            ),
                            allow(
                                "Leases",
                                "dynamodb:GetItem",
                                {
                                    "Fn::Join": [
                                        "",
                                        [
                                            "arn:",
                                            {"Ref": "AWS::Partition"},
                                            ":dynamodb:",
                                            {"Ref": "AWS::Region"},
                                            ":",
                                            {"Ref": "AWS::AccountId"},
                                            ":table/",
                                            {"Ref": "Table"},
                                        ],
                                    ]
                                },
                            ),
                        ]
                    },
                },
            },
        }
    }
    resolve = resolver(
        region=REGION, account=ACCOUNT, exports={"kinase-dev-storage:ResultsQueueArn": "arn:q"}, physical={"Table": "leases"}
    )
    statements = statements_of(template, "TaskRole", resolve)
    assert [s["Resource"] for s in statements] == ["arn:q", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/leases"]
    with pytest.raises(Unsupported, match="Fn::GetAtt"):
        resolve({"Fn::GetAtt": ["Queue", "Arn"]})


def test_the_operator_policy_generalises_environment_names_and_keeps_extra_grants_with_reasons():
    calls = [
        call("kinesisvideo", "DescribeStream", principal="cli", StreamName="kinase-dev-video"),
        call("kinesisvideo", "DescribeStream", principal="cli", StreamName="lobby-camera"),
        call("sqs", "ReceiveMessage", principal="cli", QueueUrl=QUEUE),
        call("sqs", "DeleteMessageBatch", principal="cli", QueueUrl=QUEUE),
        call("kinesisvideo", "TagStream", principal="cli", StreamName="lobby-camera"),
        call("sts", "GetCallerIdentity", principal="cli"),
    ]
    policy = generate(request(c, account=ACCOUNT) for c in calls)
    generated = {s["Sid"]: (s["Action"], s["Resource"]) for s in policy["Statement"][: -len(EXTRA)]}
    assert generated == {
        "KinesisvideoStreamAny": (
            ["kinesisvideo:DescribeStream", "kinesisvideo:TagStream"],
            ["arn:aws:kinesisvideo:REGION:ACCOUNT:stream/*"],
        ),
        "Sqs": (["sqs:DeleteMessage", "sqs:ReceiveMessage"], ["arn:aws:sqs:REGION:ACCOUNT:kinase-*"]),
        "StsAny": (["sts:GetCallerIdentity"], ["*"]),
    }
    assert all(reason for _, reason in EXTRA)
    statements = concrete(policy, region=REGION, account=ACCOUNT)
    assert all(evaluate(statements, request(c, account=ACCOUNT)).allowed for c in calls)
    assert (
        _general("arn:aws:logs:eu-west-1:1:log-group:/kinase/dev/worker:log-stream:x") == "arn:aws:logs:REGION:ACCOUNT:log-group:/kinase/*"
    )


def test_the_worker_records_each_call_when_asked_and_nothing_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    record = tmp_path / "calls.jsonl"

    def send() -> None:
        sqs = aws.client(aws.session(), "sqs", region_name=REGION)
        with Stubber(sqs) as stub:
            stub.add_response("send_message_batch", {"Successful": [], "Failed": []})
            sqs.send_message_batch(QueueUrl=QUEUE, Entries=[{"Id": "0", "MessageBody": "secret frame"}])

    monkeypatch.delenv(callrecord.VARIABLE, raising=False)
    send()
    assert not record.exists()
    monkeypatch.setenv(callrecord.VARIABLE, str(record))
    send()
    (line,) = [json.loads(x) for x in record.read_text().splitlines()]
    assert line == {
        "principal": "worker",
        "service": "sqs",
        "operation": "SendMessageBatch",
        "region": REGION,
        "params": {"QueueUrl": QUEUE},
    }


def test_calls_standing_in_for_aws_are_recorded_as_the_local_stack(tmp_path, monkeypatch):
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv(callrecord.VARIABLE, str(record))

    @callrecord.standing_in()
    def complete_what_cloudformation_skipped() -> None:
        callrecord.record_call("cli", "ec2", "ModifyVpcAttribute", REGION, {"VpcId": "vpc-1"})

    complete_what_cloudformation_skipped()
    callrecord.record_call("cli", "kinesisvideo", "PutMedia", REGION, {"StreamName": "cam"})
    assert [json.loads(x)["principal"] for x in record.read_text().splitlines()] == [callrecord.STAND_IN, "cli"]

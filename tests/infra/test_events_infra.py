"""Event delivery in the stacks: the environment's SNS topic, the events queue subscribed to it, and the workers' grants."""

from __future__ import annotations

import json

import pytest

from infra import naming

# The GPU configuration of tests/infra/test_infra.py (one synthesis for both: tests/infra/conftest.py), with all four task definitions.
ENV = "test"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def synthesized(synthesis) -> tuple[dict[str, dict], dict]:
    templates, nag, _ = synthesis(ENV, gpu_instance_type="g5.xlarge", gpu_image_digest=DIGEST)
    return {c: templates[naming.stack_name(ENV, c)] for c in naming.CONCERNS}, nag


@pytest.fixture(scope="module")
def storage(synthesized) -> dict:
    return synthesized[0]["storage"]


@pytest.fixture(scope="module")
def compute(synthesized) -> dict:
    return synthesized[0]["compute"]


def of_type(template: dict, type_: str) -> dict[str, dict]:
    return {k: r.get("Properties", {}) for k, r in template["Resources"].items() if r["Type"] == type_}


def topic_id(storage: dict) -> str:
    (logical_id,) = of_type(storage, "AWS::SNS::Topic")
    return logical_id


def events_queue_id(storage: dict) -> str:
    (subscription,) = of_type(storage, "AWS::SNS::Subscription").values()
    return subscription["Endpoint"]["Fn::GetAtt"][0]


def test_one_topic_encrypted_with_the_sns_managed_key(storage):
    (topic,) = of_type(storage, "AWS::SNS::Topic").values()
    key = json.dumps(topic["KmsMasterKeyId"])
    assert key.endswith(':alias/aws/sns"]]}'), key


def test_the_topic_refuses_publishing_without_tls(storage):
    (policy,) = of_type(storage, "AWS::SNS::TopicPolicy").values()
    assert policy["Topics"] == [{"Ref": topic_id(storage)}]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "sns:Publish"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_events_queue_is_subscribed_with_raw_delivery_and_no_filter(storage):
    (subscription,) = of_type(storage, "AWS::SNS::Subscription").values()
    assert subscription["Protocol"] == "sqs" and subscription["RawMessageDelivery"] is True
    assert subscription["TopicArn"] == {"Ref": topic_id(storage)}
    assert "FilterPolicy" not in subscription  # kinase's own queue gets every event, alert or not


def test_the_events_queue_is_encrypted_tls_only_with_its_own_dead_letter_queue(storage):
    queues = of_type(storage, "AWS::SQS::Queue")
    events = queues[events_queue_id(storage)]
    assert events["SqsManagedSseEnabled"] is True
    dlq_id = events["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    others = [q["RedrivePolicy"] for k, q in queues.items() if k != events_queue_id(storage) and "RedrivePolicy" in q]
    assert others and dlq_id not in json.dumps(others) and queues[dlq_id]["SqsManagedSseEnabled"] is True
    policies = {p["Queues"][0]["Ref"]: p["PolicyDocument"]["Statement"] for p in of_type(storage, "AWS::SQS::QueuePolicy").values()}
    for queue in (events_queue_id(storage), dlq_id):
        assert {"Bool": {"aws:SecureTransport": "false"}} in [s.get("Condition") for s in policies[queue] if s["Effect"] == "Deny"]
    # SNS may deliver to the events queue, and only from this topic
    (allow,) = [s for s in policies[events_queue_id(storage)] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "sns.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": topic_id(storage)}}}


def test_outputs_name_the_topic_and_the_events_queue(storage):
    outputs = storage["Outputs"]
    assert outputs["EventsTopicArn"]["Value"] == {"Ref": topic_id(storage)}
    assert outputs["EventsTopicArn"]["Export"]["Name"] == f"{naming.stack_name(ENV, 'storage')}:EventsTopicArn"
    assert outputs["EventsQueueUrl"]["Value"] == {"Ref": events_queue_id(storage)}
    assert naming.OUTPUTS["EventsTopicArn"] == naming.OUTPUTS["EventsQueueUrl"] == "storage"


def _task_role_statements(compute: dict) -> dict[str, dict]:
    (role_id,) = [k for k, r in compute["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("TaskRole")]
    (policy,) = [p for p in of_type(compute, "AWS::IAM::Policy").values() if p["Roles"] == [{"Ref": role_id}]]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def test_the_task_role_publishes_to_the_topic_only(compute):
    statements = _task_role_statements(compute)
    topic = {"Fn::ImportValue": f"{naming.stack_name(ENV, 'storage')}:EventsTopicArn"}
    assert statements["PublishEvents"]["Action"] == "sns:Publish" and statements["PublishEvents"]["Resource"] == topic
    publishing = [s for s in statements.values() if "sns:" in json.dumps(s["Action"])]
    assert publishing == [statements["PublishEvents"]]
    assert not [s for s in statements.values() if "kms:" in json.dumps(s["Action"])]  # the AWS-managed key needs none


def test_the_task_role_reads_the_rules_in_force(compute):
    statements = _task_role_statements(compute)
    read = statements["ReadRules"]
    assert read["Action"] == "s3:GetObject"
    resource = json.dumps(read["Resource"])
    assert f"{naming.stack_name(ENV, 'storage')}:FramesBucketName" in resource and resource.endswith('"/rules/*"]]}')
    assert statements["FindRules"]["Condition"] == {"StringLike": {"s3:prefix": ["rules/*"]}}


def test_every_worker_variant_runs_with_the_task_role_and_knows_the_topic(compute):
    tasks = of_type(compute, "AWS::ECS::TaskDefinition").values()
    families = {t["Family"] for t in tasks}
    assert families == {naming.worker_family(ENV), naming.fleet_family(ENV), naming.gpu_family(ENV), naming.gpu_fleet_family(ENV)}
    topic = {"Fn::ImportValue": f"{naming.stack_name(ENV, 'storage')}:EventsTopicArn"}
    for task in tasks:
        assert task["TaskRoleArn"]["Fn::GetAtt"][0].startswith("TaskRole"), task["Family"]
        (container,) = task["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["KINASE_EVENTS_TOPIC_ARN"] == topic, task["Family"]


def test_events_delivery_is_cdk_nag_clean(synthesized):
    _, nag = synthesized
    assert nag["violations"] == [], [v["ruleName"] for v in nag["violations"]]
    rules_ack = [f for f in nag["suppressedViolations"] if "/rules/*" in json.dumps(f)]
    assert rules_ack and all(len(f["reason"]) > 20 for f in rules_ack)

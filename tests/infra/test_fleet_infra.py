"""The fleet's infrastructure: lease table, worker service, autoscaling, IAM scoped to the environment's streams; cdk-nag clean."""

from __future__ import annotations

import json

import pytest

from infra import naming

ENV = "test"


@pytest.fixture(scope="module")
def synthesized(synthesis) -> tuple[dict[str, dict], dict]:
    templates, nag, _ = synthesis(ENV)
    return {c: templates[naming.stack_name(ENV, c)] for c in naming.CONCERNS}, nag


@pytest.fixture(scope="module")
def templates(synthesized):
    return synthesized[0]


def of_type(template: dict, type_: str) -> dict[str, dict]:
    return {k: r.get("Properties", {}) for k, r in template["Resources"].items() if r["Type"] == type_}


def test_lease_table_on_demand_encrypted_with_point_in_time_recovery(templates):
    (table,) = of_type(templates["storage"], "AWS::DynamoDB::Table").values()
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["KeySchema"] == [{"AttributeName": "stream", "KeyType": "HASH"}]
    assert table["TableName"] == naming.lease_table_name(ENV)
    output = templates["storage"]["Outputs"]["LeaseTableName"]
    assert output["Export"]["Name"] == f"{naming.stack_name(ENV, 'storage')}:LeaseTableName"


def test_service_starts_at_zero_and_rolls_new_tasks_in_before_old_ones_stop(templates):
    (service,) = of_type(templates["compute"], "AWS::ECS::Service").values()
    assert service["DesiredCount"] == 0
    deployment = service["DeploymentConfiguration"]
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)  # no gap on a deployment
    assert service["LaunchType"] == "FARGATE"
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    assert network["Subnets"] == {"Fn::Split": [",", {"Fn::ImportValue": f"{naming.stack_name(ENV, 'network')}:SubnetIds"}]}
    assert network["SecurityGroups"] == [{"Fn::ImportValue": f"{naming.stack_name(ENV, 'network')}:SecurityGroupId"}]
    task_id = service["TaskDefinition"]["Ref"]
    task = templates["compute"]["Resources"][task_id]["Properties"]
    assert task["Family"] == naming.fleet_family(ENV)
    (container,) = task["ContainerDefinitions"]
    assert container["EntryPoint"] == ["python", "-m", "worker.fleet"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["KINASE_ENV"] == ENV
    assert env["KINASE_MAX_STREAMS"] == str(naming.FLEET_MAX_STREAMS_PER_WORKER)
    assert env["KINASE_LEASE_TABLE"] == {"Fn::ImportValue": f"{naming.stack_name(ENV, 'storage')}:LeaseTableName"}
    assert "KINASE_SOURCE" not in env
    assert "FleetServiceName" in templates["compute"]["Outputs"]


def test_target_tracking_on_streams_per_worker_between_zero_and_the_maximum(templates):
    (target,) = of_type(templates["compute"], "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, naming.FLEET_MAX_WORKERS)
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"
    (policy,) = of_type(templates["compute"], "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert policy["PolicyType"] == "TargetTrackingScaling"
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == naming.FLEET_STREAMS_PER_WORKER
    metric = config["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"], metric["Statistic"]) == ("kinase/worker", "StreamsPerWorker", "Average")
    assert metric["Dimensions"] == [{"Name": "Environment", "Value": ENV}]


def _task_role_statements(compute: dict) -> dict[str, dict]:
    (role_id,) = [k for k, r in compute["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("TaskRole")]
    (policy,) = [p for p in of_type(compute, "AWS::IAM::Policy").values() if p["Roles"] == [{"Ref": role_id}]]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def test_task_role_reads_exactly_the_environments_streams_and_the_lease_table(templates):
    statements = _task_role_statements(templates["compute"])
    streams = statements["ReadEnvironmentStreams"]  # created and adopted alike: by the tag, never by the prefix alone
    assert streams["Condition"] == {"StringEquals": {f"aws:ResourceTag/{naming.ENV_TAG}": ENV}}
    assert json.dumps(streams["Resource"]).endswith(':stream/*/*"]]}')
    leases = statements["Leases"]
    assert json.dumps(leases["Resource"]).count("LeaseTableName") == 1 and ":table/" in json.dumps(leases["Resource"])
    for statement in statements.values():
        assert statement["Resource"] != "*", statement["Sid"]
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "kinesisvideo:ListStreams" not in actions


def test_the_stacks_own_stream_carries_the_environment_tag(templates):
    """The task role reads streams by their kinase:env tag: the stack's stream gets it from the stacks' tags."""
    (stream,) = of_type(templates["stream"], "AWS::KinesisVideo::Stream").values()
    assert {"Key": naming.ENV_TAG, "Value": ENV} in stream["Tags"]


def test_fleet_is_cdk_nag_clean(synthesized):
    _, nag = synthesized
    assert nag["violations"] == [], [v["ruleName"] for v in nag["violations"]]
    reasons = {f["ruleName"]: f["reason"] for f in nag["suppressedViolations"]}
    assert any("tagged kinase:env" in reason for reason in reasons.values())

"""`kinase deploy --gpu` refuses, before creating anything, a GPU instance type that cannot work in the region.

EC2 answers come from moto's copy of the real instance-type and per-zone offering data (in eu-west-3,
g6.xlarge is offered in eu-west-3b and eu-west-3c but not eu-west-3a). moto's Service Quotas serves
only VPC quotas (GetServiceQuota for ec2 answers NoSuchResourceException), so the quota's answers are
stubbed (botocore Stubber) with the shape GetServiceQuota returns.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from botocore.stub import Stubber

from infra import naming
from kinase_cli.aws import gpu_capacity
from kinase_cli.aws.target import Target
from kinase_cli.ui.errors import KinaseError

ENV_VARS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for key, value in ENV_VARS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS_VIDEO", "KINASE_LOCAL"):
        monkeypatch.delenv(key, raising=False)
    with mock_aws():
        yield


def quota(tgt: Target, code: str, value: float | None = None, error: str | None = None) -> Stubber:
    """Stub the one GetServiceQuota call the pre-flight makes (code and value as AWS answers them)."""
    stub = Stubber(tgt.client("service-quotas"))
    params = {"ServiceCode": "ec2", "QuotaCode": code}
    if error:
        stub.add_client_error("get_service_quota", service_error_code=error, http_status_code=400, expected_params=params)
    else:
        answer = {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": "q", "Value": value, "Unit": "None"}}
        stub.add_response("get_service_quota", answer, params)
    stub.activate()
    return stub


def refusal(tgt: Target, instance_type: str) -> KinaseError:
    with pytest.raises(KinaseError) as caught:
        gpu_capacity.preflight(tgt, instance_type)
    return caught.value


def test_a_type_that_fits_and_is_offered_everywhere_passes_when_the_quota_covers_the_group(aws):
    tgt = Target(region="eu-west-3")
    stub = quota(tgt, "L-DB2E81BA", 16.0)  # 4 instances (2 workers, room to roll them) x 4 vCPUs
    gpu_capacity.preflight(tgt, "g4dn.xlarge")
    stub.assert_no_pending_responses()


def test_a_type_missing_from_a_zone_is_refused_with_types_offered_in_every_zone(aws):
    error = refusal(Target(region="eu-west-3"), "g6.xlarge")
    assert error.message == "g6.xlarge is not offered in eu-west-3a"
    # The smallest that fit first; g6 (not in eu-west-3a) is not offered instead.
    assert "offered in every zone of eu-west-3 (eu-west-3a, eu-west-3b): g4dn.xlarge, g5.xlarge, g4dn.2xlarge, g5.2xlarge" in error.hint
    assert "g6." not in error.hint and "--instance-type" in error.hint


def test_the_zones_are_those_of_the_deployed_subnets(aws):
    """Once the network stack exists its subnets' zones count (there, g6.xlarge is offered in both)."""
    import json

    import boto3

    tgt = Target(region="eu-west-3")
    subnets = {
        f"Subnet{z}": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": {"Ref": "Vpc"}, "CidrBlock": f"10.0.{i}.0/24", "AvailabilityZone": f"eu-west-3{z}"},
        }
        for i, z in enumerate("bc")
    }
    template = {
        "Resources": {"Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}}, **subnets},
        "Outputs": {"SubnetIds": {"Value": {"Fn::Join": [",", [{"Ref": name} for name in subnets]]}}},
    }
    boto3.client("cloudformation", region_name="eu-west-3").create_stack(
        StackName=tgt.stack_name("network"), TemplateBody=json.dumps(template)
    )
    assert gpu_capacity.subnet_zones(tgt) == ["eu-west-3b", "eu-west-3c"]
    stub = quota(tgt, "L-DB2E81BA", 16.0)
    gpu_capacity.preflight(tgt, "g6.xlarge")
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("instance_type", "why"),
    [
        ("p9.huge", "p9.huge is not an EC2 instance type in us-east-1"),
        ("m5.xlarge", "m5.xlarge has no GPU"),
        ("g5g.xlarge", "g5g.xlarge is arm64; the ECS GPU image is x86_64"),
        ("g6f.large", "g6f.large is too small: 2 vCPU and 8 GiB, the GPU task needs 3.5 vCPU and 14 GiB besides the ECS agent"),
    ],
)
def test_a_type_that_cannot_run_the_gpu_task_is_refused_with_what_to_choose(aws, instance_type, why):
    error = refusal(Target(region="us-east-1"), instance_type)
    assert error.message == why
    assert error.hint.startswith("x86 NVIDIA GPU types that fit, offered in every zone of us-east-1 (us-east-1a, us-east-1b): g4dn.xlarge")
    assert "g5g." not in error.hint and "g6f.large" not in error.hint


def test_an_amd_gpu_cannot_run_the_nvidia_image():
    """moto's EC2 data has no AMD GPU type: g4ad.xlarge as DescribeInstanceTypes describes it."""
    g4ad = {
        "InstanceType": "g4ad.xlarge",
        "GpuInfo": {"Gpus": [{"Name": "Radeon Pro V520", "Manufacturer": "AMD", "Count": 1, "MemoryInfo": {"SizeInMiB": 8192}}]},
        "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
        "VCpuInfo": {"DefaultVCpus": 4},
        "MemoryInfo": {"SizeInMiB": 16384},
    }
    assert gpu_capacity.unsuitable(g4ad) == "has a AMD GPU; the ECS GPU image drives NVIDIA GPUs only"
    nvidia = {**g4ad, "GpuInfo": {"Gpus": [{**g4ad["GpuInfo"]["Gpus"][0], "Manufacturer": "NVIDIA"}]}}
    assert gpu_capacity.unsuitable(nvidia) is None


def test_a_region_without_a_fitting_type_is_refused_with_another_region_to_choose(aws, monkeypatch):
    monkeypatch.setattr(gpu_capacity, "_offered", lambda ec2, zones: {z: {"m5.xlarge", "g5g.xlarge"} for z in zones})
    error = refusal(Target(region="eu-west-3"), "g4dn.xlarge")
    assert error.message == "g4dn.xlarge is not offered in eu-west-3a, eu-west-3b"
    assert (
        error.hint
        == "no x86 NVIDIA GPU type big enough is offered in every zone of eu-west-3 (eu-west-3a, eu-west-3b): choose another --region"
    )


def test_a_quota_too_small_for_the_group_is_refused_with_the_increase_to_ask_for(aws):
    tgt = Target(region="eu-west-3")
    quota(tgt, "L-DB2E81BA", 0.0)
    error = refusal(tgt, "g4dn.xlarge")
    need = naming.GPU_MAX_INSTANCES * 4
    assert (
        error.message
        == f"quota L-DB2E81BA (Running On-Demand G and VT instances) is 0 vCPUs in eu-west-3; 4 × g4dn.xlarge (the workers and room to roll them) need {need}"
    )
    assert f"--quota-code L-DB2E81BA --desired-value {need} --region eu-west-3" in error.hint


def test_p_instances_count_against_their_own_quota(aws):
    tgt = Target(region="us-east-1")
    quota(tgt, "L-417A185B", 96.0)
    error = refusal(tgt, "p4d.24xlarge")
    assert error.message.startswith(
        "quota L-417A185B (Running On-Demand P instances) is 96 vCPUs in us-east-1; 4 × p4d.24xlarge (the workers and room to roll them) need 384"
    )


def test_an_unreadable_quota_is_a_warning_not_a_refusal(aws, capsys):
    tgt = Target(region="eu-west-3")
    stub = quota(tgt, "L-DB2E81BA", error="AccessDeniedException")
    gpu_capacity.preflight(tgt, "g4dn.xlarge")
    stub.assert_no_pending_responses()
    warning = capsys.readouterr().err
    assert "could not read quota L-DB2E81BA" in warning and "AccessDeniedException" in warning and "need 16 vCPUs" in warning


def test_the_local_stack_checks_the_type_but_not_the_quota(aws, monkeypatch):
    tgt = Target(region="eu-west-3", local=True)
    monkeypatch.setattr(Target, "endpoint_for", lambda self, service: None)  # moto in this process stands for the local stack
    gpu_capacity.preflight(tgt, "g4dn.xlarge")  # no quota answer stubbed: a call would fail
    assert refusal(tgt, "g6.xlarge").message == "g6.xlarge is not offered in eu-west-3a"


def activities_stubs(tgt: Target, activities: list[dict]) -> None:
    group_arn = "arn:aws:autoscaling:eu-west-3:123456789012:autoScalingGroup:1:autoScalingGroupName/kinase-dev-compute-GpuInstances"
    ecs = Stubber(tgt.client("ecs"))
    ecs.add_response(
        "describe_capacity_providers",
        {"capacityProviders": [{"name": "kinase-dev-gpu", "autoScalingGroupProvider": {"autoScalingGroupArn": group_arn}}]},
        {"capacityProviders": ["kinase-dev-gpu"]},
    )
    ecs.activate()
    autoscaling = Stubber(tgt.client("autoscaling"))
    autoscaling.add_response(
        "describe_scaling_activities",
        {"Activities": activities},
        {"AutoScalingGroupName": "kinase-dev-compute-GpuInstances", "MaxRecords": 20},
    )
    autoscaling.activate()


def activity(status: str, minutes_ago: float, message: str, now: datetime) -> dict:
    return {
        "ActivityId": f"a-{minutes_ago}",
        "AutoScalingGroupName": "kinase-dev-compute-GpuInstances",
        "Cause": "At 2026-12-07T12:00:00Z an instance was started in response to a difference between desired and actual capacity",
        "Description": "Launching a new EC2 instance. Status Reason: ...",
        "StartTime": now - timedelta(minutes=minutes_ago),
        "StatusCode": status,
        **({"StatusMessage": message} if message else {}),
    }


QUOTA_FAILURE = (
    "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance bucket that the "
    "specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment "
    "to this limit. Launching EC2 instance failed."
)
CAPACITY_FAILURE = "We currently do not have sufficient g4dn.xlarge capacity in the Availability Zone you requested (eu-west-3a). Our system will be working on provisioning additional capacity."


def test_failed_launches_since_the_last_success_are_reported_with_their_first_sentence(aws):
    tgt = Target(region="eu-west-3")
    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    activities_stubs(
        tgt,
        [
            activity("Failed", 2, QUOTA_FAILURE, now),
            activity("Cancelled", 5, CAPACITY_FAILURE, now),
            activity("Successful", 20, "", now),
            activity("Failed", 30, QUOTA_FAILURE, now),  # before a launch that worked: not why tasks wait now
        ],
    )
    report = gpu_capacity.failed_activities(tgt, "kinase-dev-gpu", now=now)
    assert report["group"] == "kinase-dev-compute-GpuInstances"
    assert report["failed_activities"] == [
        {
            "status": "Failed",
            "started_at": "2026-12-07T11:58:00.000Z",
            "cause": "You have requested more vCPU capacity than your current vCPU limit of 0 allows for the instance bucket that the "
            "specified instance type belongs to",
        },
        {
            "status": "Cancelled",
            "started_at": "2026-12-07T11:55:00.000Z",
            "cause": "We currently do not have sufficient g4dn.xlarge capacity in the Availability Zone you requested (eu-west-3a)",
        },
    ]


def test_the_group_is_found_from_the_capacity_provider_as_ecs_describes_it(aws):
    """moto's ECS and Auto Scaling (moto's CloudFormation creates no capacity provider, so not on the local stack)."""
    import boto3

    ec2 = boto3.client("ec2", region_name="eu-west-3")
    subnet = ec2.create_subnet(VpcId=ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"], CidrBlock="10.0.0.0/24")["Subnet"]
    autoscaling = boto3.client("autoscaling", region_name="eu-west-3")
    autoscaling.create_launch_configuration(LaunchConfigurationName="lc", ImageId="ami-12c6146b", InstanceType="g4dn.xlarge")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="kinase-dev-compute-GpuInstances",
        LaunchConfigurationName="lc",
        MinSize=0,
        MaxSize=2,
        VPCZoneIdentifier=subnet["SubnetId"],
    )
    arn = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"][0]["AutoScalingGroupARN"]
    boto3.client("ecs", region_name="eu-west-3").create_capacity_provider(
        name="kinase-dev-gpu", autoScalingGroupProvider={"autoScalingGroupArn": arn}
    )
    report = gpu_capacity.failed_activities(Target(region="eu-west-3"), "kinase-dev-gpu")
    assert report == {"capacity_provider": "kinase-dev-gpu", "group": "kinase-dev-compute-GpuInstances", "failed_activities": []}


def test_failures_older_than_the_window_are_history(aws):
    tgt = Target(region="eu-west-3")
    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    activities_stubs(tgt, [activity("Failed", 61, QUOTA_FAILURE, now)])
    assert gpu_capacity.failed_activities(tgt, "kinase-dev-gpu", now=now)["failed_activities"] == []


def test_status_shows_failed_launches_instead_of_leaving_tasks_in_provisioning(monkeypatch):
    from rich.console import Console

    from kinase_cli.commands import status

    console = Console(record=True, width=250)
    monkeypatch.setattr(status, "out", console)
    failed = [
        {
            "status": "Failed",
            "started_at": "2026-12-07T11:58:00.000Z",
            "cause": "You have requested more vCPU capacity than your current vCPU limit of 0 allows",
        }
    ]
    status._render_gpu({"capacity_provider": "kinase-dev-gpu", "group": "kinase-dev-compute-GpuInstances", "failed_activities": failed})
    status._render_gpu({"capacity_provider": "kinase-dev-gpu", "group": "g", "failed_activities": []})
    status._render_gpu(None)
    lines = console.export_text().splitlines()
    assert lines == [
        "gpu    capacity provider kinase-dev-gpu: GPU instances do not start (1 failed launch(es) of group kinase-dev-compute-GpuInstances; "
        "GPU tasks wait in PROVISIONING until one starts)",
        "  Failed 2026-12-07T11:58:00.000Z: You have requested more vCPU capacity than your current vCPU limit of 0 allows",
        "gpu    capacity provider kinase-dev-gpu: no failed instance launches in the last hour",
    ]

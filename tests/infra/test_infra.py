"""The CDK app: resource assertions on the synthesized templates, and cdk-nag (AwsSolutions) clean."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from infra import naming
from support.cdk import Synthesis, synth_with_nag

ENV = "test"
INPUT_BUCKET = "camera-archive-videos"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def synthesized(synthesis) -> Synthesis:
    return synthesis(ENV, input_buckets=[INPUT_BUCKET], image_digest=DIGEST)


@pytest.fixture(scope="module")
def templates(synthesized) -> dict[str, dict]:
    return {concern: synthesized.templates[naming.stack_name(ENV, concern)] for concern in naming.CONCERNS}


def resources(template: dict, type_: str) -> list[dict]:
    return [r.get("Properties", {}) for r in template["Resources"].values() if r["Type"] == type_]


def one(template: dict, type_: str) -> dict:
    (props,) = resources(template, type_)
    return props


def worker_task(template: dict) -> dict:
    """The one-off worker's task definition (the fleet's has its own family: tests/infra/test_fleet_infra.py)."""
    (props,) = [p for p in resources(template, "AWS::ECS::TaskDefinition") if p["Family"] == f"kinase-{ENV}-worker"]
    return props


def test_network_has_public_subnets_only_no_nat_and_dns_hostnames(templates):
    network = templates["network"]
    assert resources(network, "AWS::EC2::NatGateway") == []
    subnets = resources(network, "AWS::EC2::Subnet")
    assert len(subnets) == 2 and all(s["MapPublicIpOnLaunch"] is True for s in subnets)
    vpc = one(network, "AWS::EC2::VPC")
    assert vpc["EnableDnsHostnames"] is True and vpc["EnableDnsSupport"] is True
    assert resources(network, "AWS::EC2::FlowLog")


def test_security_group_admits_nothing(templates):
    for template in templates.values():
        assert resources(template, "AWS::EC2::SecurityGroupIngress") == []
    sg = one(templates["network"], "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in sg
    assert sg["SecurityGroupEgress"] == [
        {"CidrIp": "0.0.0.0/0", "Description": "Allow all outbound traffic by default", "IpProtocol": "-1"}
    ]


def _denies_insecure_transport(policy_document: dict) -> bool:
    return any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in policy_document["Statement"]
    )


def test_buckets_encrypted_private_tls_only_and_expiring(templates):
    storage = templates["storage"]
    buckets = {k: r for k, r in storage["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
    assert len(buckets) == 2
    for logical_id, bucket in buckets.items():
        props = bucket["Properties"]
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert sse["SSEAlgorithm"] in ("AES256", "aws:kms")
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert any(rule.get("ExpirationInDays") for rule in props["LifecycleConfiguration"]["Rules"])
        policies = [p for p in resources(storage, "AWS::S3::BucketPolicy") if p["Bucket"] == {"Ref": logical_id}]
        assert len(policies) == 1 and _denies_insecure_transport(policies[0]["PolicyDocument"])
    frames = next(b["Properties"] for b in buckets.values() if "LoggingConfiguration" in b["Properties"])
    rules = frames["LifecycleConfiguration"]["Rules"]
    assert {"Prefix": "frames/", "ExpirationInDays": 14, "Id": "expire-frames", "Status": "Enabled"} in rules
    assert {"Prefix": "inputs/", "ExpirationInDays": 7, "Id": "expire-inputs", "Status": "Enabled"} in rules


def test_queues_encrypted_tls_only_with_dead_letter_queue(templates):
    storage = templates["storage"]
    # the events queues: tests/infra/test_events_infra.py
    queues = {k: r["Properties"] for k, r in storage["Resources"].items() if r["Type"] == "AWS::SQS::Queue" and not k.startswith("Events")}
    assert len(queues) == 2
    for logical_id, props in queues.items():
        assert props["SqsManagedSseEnabled"] is True
        policies = [p for p in resources(storage, "AWS::SQS::QueuePolicy") if p["Queues"] == [{"Ref": logical_id}]]
        assert len(policies) == 1 and _denies_insecure_transport(policies[0]["PolicyDocument"])
    (results,) = [p for p in queues.values() if "RedrivePolicy" in p]
    (dlq_id,) = [k for k, p in queues.items() if "RedrivePolicy" not in p]
    assert results["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}, "maxReceiveCount": 5}
    assert results["VisibilityTimeout"] >= 60


def test_stream_has_retention_and_is_never_referenced_by_getatt(templates):
    stream = one(templates["stream"], "AWS::KinesisVideo::Stream")
    assert stream["Name"] == naming.stream_name(ENV) and stream["DataRetentionInHours"] > 0
    assert "Fn::GetAtt" not in json.dumps(templates["stream"])
    assert "KinesisVideo" not in json.dumps(templates["compute"]).replace("kinesisvideo:", "")


def test_repository_scans_on_push_has_immutable_tags_and_keeps_the_last_images(templates):
    repo = one(templates["registry"], "AWS::ECR::Repository")
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert repo["RepositoryName"] == naming.repository_name(ENV)
    assert repo["ImageTagMutability"] == "IMMUTABLE"  # checkov CKV_AWS_51
    (rule,) = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
    assert rule["action"] == {"type": "expire"}


def test_task_definition_runs_the_pinned_digest(templates):
    (container,) = worker_task(templates["compute"])["ContainerDefinitions"]
    image = json.dumps(container["Image"])
    assert image.endswith(f'"@{DIGEST}"]]}}') and ":latest" not in image


def test_task_definition_names_a_placeholder_tag_before_any_push(synthesis):
    compute = synthesis(ENV).templates[naming.stack_name(ENV, "compute")]
    (container,) = worker_task(compute)["ContainerDefinitions"]
    assert json.dumps(container["Image"]).endswith('":latest"]]}')


def test_task_definition_container_sizes_logs_and_environment(templates):
    compute = templates["compute"]
    task = worker_task(compute)
    assert task["RequiresCompatibilities"] == ["FARGATE"] and task["NetworkMode"] == "awsvpc"
    (container,) = task["ContainerDefinitions"]
    assert container["Cpu"] > 0 and container["Memory"] > 0
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["KINASE_SOURCE"] == f"kvs://{naming.stream_name(ENV)}"
    assert env["KINASE_MODEL"] == "/opt/kinase/models/yolo11n.onnx"
    assert {"KINASE_BUCKET", "KINASE_QUEUE_URL"} <= env.keys()
    log_group = one(compute, "AWS::Logs::LogGroup")
    assert log_group["RetentionInDays"] == naming.LOG_RETENTION_DAYS == 14
    cluster = one(compute, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]


def _task_role_statements(compute: dict) -> list[dict]:
    (role_id,) = [k for k, r in compute["Resources"].items() if r["Type"] == "AWS::IAM::Role" and k.startswith("TaskRole")]
    (policy,) = [p for p in resources(compute, "AWS::IAM::Policy") if p["Roles"] == [{"Ref": role_id}]]
    return policy["PolicyDocument"]["Statement"]


def test_task_role_grants_exactly_the_workers_calls(templates):
    statements = {s["Sid"]: s for s in _task_role_statements(templates["compute"])}
    actions = {sid: sorted(s["Action"]) if isinstance(s["Action"], list) else [s["Action"]] for sid, s in statements.items()}
    assert actions == {
        "ReadStream": ["kinesisvideo:DescribeStream", "kinesisvideo:GetDataEndpoint", "kinesisvideo:GetMedia"],
        "WriteFrames": ["s3:PutObject"],
        "Checkpoint": ["s3:GetObject", "s3:PutObject"],
        "FindCheckpoint": ["s3:ListBucket"],
        "SendResults": ["sqs:SendMessage"],
        "ReadInputs": ["s3:GetObject"],
        "ReadInputBuckets": ["s3:GetObject"],
        # the fleet's (tests/infra/test_fleet_infra.py)
        "ReadEnvironmentStreams": ["kinesisvideo:DescribeStream", "kinesisvideo:GetDataEndpoint", "kinesisvideo:GetMedia"],
        "Leases": ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:Scan", "dynamodb:UpdateItem"],
        # rules and events (tests/infra/test_events_infra.py)
        "ReadRules": ["s3:GetObject"],
        "FindRules": ["s3:ListBucket"],
        "PublishEvents": ["sns:Publish"],
    }
    rendered = json.dumps(statements)
    assert f"stream/{naming.stream_name(ENV)}/*" in rendered
    assert "/frames/*" in json.dumps(statements["WriteFrames"]["Resource"])
    assert "/checkpoints/*" in json.dumps(statements["Checkpoint"]["Resource"])
    assert statements["FindCheckpoint"]["Condition"] == {"StringLike": {"s3:prefix": ["checkpoints/*"]}}
    assert "kinase-test-storage:FramesBucketName" in json.dumps(statements["ReadInputs"]["Resource"])
    assert json.dumps(statements["ReadInputs"]["Resource"]).endswith('"/inputs/*"]]}')
    assert statements["ReadInputBuckets"]["Resource"] == {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{INPUT_BUCKET}/*"]]}
    for s in statements.values():
        assert s["Effect"] == "Allow" and s["Resource"] != "*"


def test_no_wildcard_actions_anywhere(templates):
    for template in templates.values():
        for policy in resources(template, "AWS::IAM::Policy"):
            for s in policy["PolicyDocument"]["Statement"]:
                for action in s["Action"] if isinstance(s["Action"], list) else [s["Action"]]:
                    assert "*" not in action, (action, s)


def test_outputs_are_exactly_the_documented_keys(templates):
    for concern, template in templates.items():
        expected = {k for k, c in naming.OUTPUTS.items() if c == concern} - naming.OPTIONAL_OUTPUTS
        assert set(template["Outputs"]) == expected, concern


def test_cdk_nag_clean_and_every_acknowledgement_has_a_reason(synthesized):
    nag = synthesized.nag
    assert nag["violations"] == [], [v["ruleName"] for v in nag["violations"]]
    assert nag["conclusion"] == "success"
    for finding in nag["suppressedViolations"]:
        assert len(finding["reason"].strip()) > 20, finding["ruleName"]
    assert "AwsSolutions-ECS2" in {f["ruleName"] for f in nag["suppressedViolations"]}


def test_cdk_nag_check_reports_an_unacknowledged_finding(tmp_path):
    def bad(app: cdk.App) -> None:
        sqs.Queue(cdk.Stack(app, "Bad"), "PlainQueue")

    templates, nag = synth_with_nag(tmp_path, bad)
    assert nag["conclusion"] == "failure"
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= {v["ruleName"] for v in nag["violations"]}


def test_without_input_buckets_the_task_reads_only_its_own_inputs(synthesis):
    compute = synthesis(ENV).templates[naming.stack_name(ENV, "compute")]
    sids = {s["Sid"] for s in _task_role_statements(compute)}
    assert "ReadInputs" in sids and "ReadInputBuckets" not in sids


def test_both_roles_trust_only_ecs_tasks_of_this_account_and_region(templates):
    roles = {k: r["Properties"] for k, r in templates["compute"]["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert {k.rstrip("0123456789ABCDEF") for k in roles} == {"TaskRole", "ExecutionRole"}
    account = {"Ref": "AWS::AccountId"}
    source_arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":ecs:", {"Ref": "AWS::Region"}, ":", account, ":*"]]}
    for props in roles.values():
        (statement,) = props["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"] == {"ArnLike": {"aws:SourceArn": source_arn}, "StringEquals": {"aws:SourceAccount": account}}
    task = worker_task(templates["compute"])
    execution_id = next(k for k in roles if k.startswith("ExecutionRole"))
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": [execution_id, "Arn"]}


def _cfn_lint(paths: list[Path], regions: tuple[str, ...] = ("us-east-1",)) -> list[tuple[str, str, str]]:
    """cfn-lint's findings (every severity: errors, warnings, informational) as (rule, path, message)."""
    from cfnlint.api import ManualArgs, lint_file

    config = ManualArgs(regions=list(regions))
    return [(m.rule.id, m.filename, m.message) for path in paths for m in lint_file(path, config=config)]


def test_templates_pass_cfn_lint_without_errors_or_warnings(synthesized):
    paths = sorted(synthesized.outdir.glob("*.template.json"))
    assert len(paths) == len(naming.CONCERNS)
    assert _cfn_lint(paths) == []


def test_cfn_lint_knows_kinesis_video_is_missing_from_some_regions(synthesized):
    """The lint run above is meaningful: it fails a template in a region without Kinesis Video (E3006)."""
    findings = _cfn_lint([synthesized.outdir / f"{naming.stack_name(ENV, 'stream')}.template.json"], regions=("us-west-1",))
    assert [rule for rule, _, _ in findings] == ["E3006"]


@pytest.fixture(scope="module")
def gpu_synthesized(synthesis) -> Synthesis:
    return synthesis(ENV, gpu_instance_type="g5.xlarge", gpu_image_digest=DIGEST)


def test_gpu_workers_scale_from_zero_on_gpu_instances(gpu_synthesized):
    templates, _, _ = gpu_synthesized
    compute = templates[naming.stack_name(ENV, "compute")]
    group = one(compute, "AWS::AutoScaling::AutoScalingGroup")
    # Twice the GPU fleet's workers: a 100/200 rolling deployment starts every new task on a free instance first.
    assert (group["MinSize"], group["MaxSize"]) == ("0", str(2 * naming.GPU_MAX_WORKERS)) and "DesiredCapacity" not in group
    data = one(compute, "AWS::EC2::LaunchTemplate")["LaunchTemplateData"]
    assert data["InstanceType"] == "g5.xlarge"
    assert data["MetadataOptions"] == {"HttpTokens": "required"}
    assert all(d["Ebs"]["Encrypted"] is True for d in data["BlockDeviceMappings"])
    (nic,) = data["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is True
    assert nic["Groups"] == [{"Fn::ImportValue": f"{naming.stack_name(ENV, 'network')}:SecurityGroupId"}]
    ami = compute["Parameters"][data["ImageId"]["Ref"]]
    # Amazon Linux 2 is past its end of standard support; the AL2023 ECS GPU image carries the NVIDIA driver.
    assert ami["Default"] == "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id"
    provider = one(compute, "AWS::ECS::CapacityProvider")
    assert provider["Name"] == naming.gpu_capacity_provider(ENV)
    asg = provider["AutoScalingGroupProvider"]
    assert asg["ManagedScaling"] == {"Status": "ENABLED", "TargetCapacity": 100} and asg["ManagedTerminationProtection"] == "DISABLED"
    provider_id = next(k for k, r in compute["Resources"].items() if r["Type"] == "AWS::ECS::CapacityProvider")
    assert one(compute, "AWS::ECS::ClusterCapacityProviderAssociations")["CapacityProviders"] == [{"Ref": provider_id}]
    assert resources(compute, "AWS::Lambda::Function") == [] and resources(compute, "AWS::SNS::Topic") == []  # ECS drains, no hook


def test_gpu_task_definition_asks_for_one_gpu_and_runs_the_gpu_image(gpu_synthesized):
    templates, _, _ = gpu_synthesized
    compute = templates[naming.stack_name(ENV, "compute")]
    (task,) = [t for t in resources(compute, "AWS::ECS::TaskDefinition") if t["Family"] == naming.gpu_family(ENV)]
    assert task["RequiresCompatibilities"] == ["EC2"] and task["NetworkMode"] == "bridge"
    (container,) = task["ContainerDefinitions"]
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["KINASE_DEVICE"] == "cuda" and env["KINASE_SOURCE"] == f"kvs://{naming.stream_name(ENV)}"
    assert json.dumps(container["Image"]).endswith(f'"@{DIGEST}"]]}}')
    assert task["TaskRoleArn"]["Fn::GetAtt"][0].startswith("TaskRole")
    assert set(compute["Outputs"]) >= naming.OPTIONAL_OUTPUTS
    network = templates[naming.stack_name(ENV, "network")]
    assert set(network["Outputs"]) == {k for k, c in naming.OUTPUTS.items() if c == "network"}


def test_gpu_fleet_is_a_service_on_the_gpu_capacity_provider_with_no_room_until_fleet_up(gpu_synthesized):
    """`kinase fleet up --gpu` runs the fleet worker on the GPU instances: its own ECS service, created at 0 tasks
    with autoscaling limits 0..0, since it tracks the same StreamsPerWorker metric as the Fargate fleet."""
    templates, _, _ = gpu_synthesized
    compute = templates[naming.stack_name(ENV, "compute")]
    services = {k: r["Properties"] for k, r in compute["Resources"].items() if r["Type"] == "AWS::ECS::Service"}
    (gpu_id,) = [k for k, s in services.items() if "CapacityProviderStrategy" in s]
    service = services[gpu_id]
    provider_id = next(k for k, r in compute["Resources"].items() if r["Type"] == "AWS::ECS::CapacityProvider")
    assert service["CapacityProviderStrategy"] == [{"CapacityProvider": {"Ref": provider_id}, "Weight": 1}]
    assert "LaunchType" not in service and "NetworkConfiguration" not in service  # bridge mode, like the one-off GPU task
    assert service["DesiredCount"] == 0
    deployment = service["DeploymentConfiguration"]
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)  # rolls like the Fargate fleet
    task = compute["Resources"][service["TaskDefinition"]["Ref"]]["Properties"]
    assert task["Family"] == naming.gpu_fleet_family(ENV) and task["RequiresCompatibilities"] == ["EC2"]
    (container,) = task["ContainerDefinitions"]
    assert container["Name"] == naming.FLEET_CONTAINER_NAME and container["EntryPoint"] == list(naming.FLEET_ENTRY_POINT)
    assert container["ResourceRequirements"] == [{"Type": "GPU", "Value": "1"}]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["KINASE_DEVICE"] == "cuda" and env["KINASE_ENV"] == ENV and "KINASE_SOURCE" not in env
    assert json.dumps(container["Image"]).endswith(f'"@{DIGEST}"]]}}')
    targets = resources(compute, "AWS::ApplicationAutoScaling::ScalableTarget")
    (gpu_target,) = [t for t in targets if gpu_id in json.dumps(t["ResourceId"])]
    assert (gpu_target["MinCapacity"], gpu_target["MaxCapacity"]) == (0, 0)
    assert sorted(t["MaxCapacity"] for t in targets) == [0, naming.FLEET_MAX_WORKERS]  # only the Fargate fleet has room
    policies = resources(compute, "AWS::ApplicationAutoScaling::ScalingPolicy")
    metrics = {json.dumps(p["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]) for p in policies}
    assert len(policies) == 2 and len(metrics) == 1  # both track the same metric
    assert compute["Outputs"]["GpuFleetServiceName"]["Value"] == {"Fn::GetAtt": [gpu_id, "Name"]}


def test_every_container_gets_the_stack_region(gpu_synthesized):
    """A bridge-mode container on EC2 gets AWS_REGION only from ECS agents newer than amazon-ecs-agent PR #4946,
    and IMDSv2 with hop limit 1 hides the instance's metadata: without these the GPU worker's boto3 has no region."""
    compute = gpu_synthesized[0][naming.stack_name(ENV, "compute")]
    containers = [c for t in resources(compute, "AWS::ECS::TaskDefinition") for c in t["ContainerDefinitions"]]
    assert len(containers) == 4  # the one-off worker and the fleet, on Fargate and on the GPU instances
    for container in containers:
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == {"Ref": "AWS::Region"}, container["Name"]


def test_gpu_templates_are_cdk_nag_and_cfn_lint_clean(gpu_synthesized):
    _, nag, outdir = gpu_synthesized
    assert nag["violations"] == [], [v["ruleName"] for v in nag["violations"]]
    assert _cfn_lint(sorted(outdir.glob("*.template.json"))) == []


def test_run_task_reads_the_allowed_input_buckets_from_the_deployed_compute_template(templates):
    """kinase_cli/workflows/inputs.py finds --input-bucket grants in the template CloudFormation holds."""
    from kinase_cli.workflows import inputs

    class Deployed:
        def stack_name(self, concern: str) -> str:
            return naming.stack_name(ENV, concern)

        def client(self, service: str):
            assert service == "cloudformation"
            return self

        def get_template(self, StackName: str) -> dict:
            return {"TemplateBody": json.dumps(templates[StackName.rsplit("-", 1)[1]])}

    assert inputs.allowed_buckets(Deployed()) == {INPUT_BUCKET}

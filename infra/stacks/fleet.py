"""The worker fleet: the lease table (storage stack) and the worker pool as an ECS service (compute stack).

One lease per stream of the environment lives in a DynamoDB table (worker/fleet/leases.py); the pool is
an ECS service, so ECS replaces failed tasks and Application Auto Scaling sets the count. The
service starts at 0 tasks (`kinase fleet up` starts it). A deployment starts the new tasks before it
stops the old ones (minimum healthy 100 %, maximum 200 %): the leases keep any stream from being
read twice, so the new tasks wait for hand-overs, and each old task, stopped with SIGTERM,
checkpoints and releases its leases for a new one to take at once. No camera has a gap.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra import naming
from infra.stacks.nag import acknowledge
from infra.stacks.outputs import imported
from worker import settings
from worker.fleet.leases import KEY
from worker.metrics import NAMESPACE

# The fleet worker logs StreamsPerWorker (the environment's streams over the live workers it sees)
# in its embedded-metric lines, so it needs no cloudwatch:PutMetricData.
SCALING_METRIC = "StreamsPerWorker"
LEASES_METRIC = "LeasedStreams"  # leases one worker holds, in the same line


def lease_table(scope: Construct) -> dynamodb.Table:
    """Named `<storage stack>-leases` (naming.lease_table_name)."""
    return dynamodb.Table(
        scope,
        "LeaseTable",
        table_name=f"{cdk.Stack.of(scope).stack_name}-leases",
        partition_key=dynamodb.Attribute(name=KEY, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def grant_streams(stack: cdk.Stack, role: iam.Role, env_name: str, table_name: str) -> None:
    """The environment's streams and the lease table.

    A stream is the environment's when it is tagged `kinase:env=<env>` (infra/naming.py): the name
    prefix alone would also match a stream of an environment named before names lost their `-`
    (`kinase-prod-` begins `kinase-prod-eu-cam1`), so the statement asks for the tag
    (`aws:ResourceTag`, which the Service Authorization Reference lists for Kinesis Video's `stream`
    resource) on every stream, created or adopted. No ListStreams (it has no resource-level
    permission): the lease table is the list of the environment's streams (`kinase stream create` /
    `adopt` write it), and a stream that is gone shows in DescribeStream.
    """
    role.add_to_policy(
        iam.PolicyStatement(
            sid="ReadEnvironmentStreams",
            actions=["kinesisvideo:GetDataEndpoint", "kinesisvideo:GetMedia", "kinesisvideo:DescribeStream"],
            resources=[stack.format_arn(service="kinesisvideo", resource="stream", resource_name="*/*")],
            conditions={"StringEquals": {f"aws:ResourceTag/{naming.ENV_TAG}": env_name}},
        )
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="Leases",
            # no PutItem: the CLI writes new leases (`stream create/adopt`, `fleet up`); workers only update and delete them
            actions=["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"],
            resources=[stack.format_arn(service="dynamodb", resource="table", resource_name=table_name)],
        )
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kinesisvideo:<AWS::Region>:<AWS::AccountId>:stream/*/*]",
        f"the environment's streams: only those tagged {naming.ENV_TAG}={env_name} (aws:ResourceTag condition)",
    )


def fleet_environment(
    *, env_name: str, bucket_name: str, queue_url: str, events_topic_arn: str, model: str, lease_table_name: str
) -> dict[str, str]:
    """The fleet worker's settings, the same on Fargate and on the GPU instances (infra/stacks/gpu.py)."""
    return settings.environment(
        bucket=bucket_name,
        queue_url=queue_url,
        events_topic_arn=events_topic_arn,
        model=model,
        lease_table=lease_table_name,
        env=env_name,
        max_streams=naming.FLEET_MAX_STREAMS_PER_WORKER,
    )


def service_rules() -> dict:
    """What every fleet service is created with: no task until `kinase fleet up`, and rolling
    deployments that start the new tasks before stopping the old ones (minimum healthy 0 % would stop
    every task first and cost every camera a gap; the leases already keep a stream from being read
    twice), rolled back by the circuit breaker."""
    return {
        "desired_count": 0,
        "min_healthy_percent": 100,
        "max_healthy_percent": 200,
        "circuit_breaker": ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
    }


def scale_on_streams_per_worker(service: ecs.BaseService, env_name: str, max_capacity: int) -> None:
    """Target tracking on the workers' own StreamsPerWorker, between 0 and `max_capacity` tasks.

    Every fleet service of an environment tracks the same metric, so only one may have room to
    scale: `kinase fleet up` gives the one it starts its limits and the other 0..0."""
    scaling = service.auto_scale_task_count(min_capacity=0, max_capacity=max_capacity)
    scaling.scale_to_track_custom_metric(
        "StreamsPerWorker",
        metric=cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=SCALING_METRIC,
            dimensions_map={"Environment": env_name},
            statistic="Average",
            period=cdk.Duration.minutes(1),
        ),
        target_value=naming.FLEET_STREAMS_PER_WORKER,
        scale_in_cooldown=cdk.Duration.minutes(5),
        scale_out_cooldown=cdk.Duration.minutes(1),
    )


class WorkerFleet(Construct):
    """The fleet task definition (same image and roles as the one-off task, fleet entry point) and its service."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        cluster: ecs.Cluster,
        image: ecs.ContainerImage,
        task_role: iam.Role,
        execution_role: iam.Role,
        log_driver: ecs.LogDriver,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, id)
        self.task = ecs.FargateTaskDefinition(
            self,
            "FleetTask",
            family=naming.fleet_family(env_name),
            cpu=naming.TASK_CPU,
            memory_limit_mib=naming.TASK_MEMORY_MIB,
            task_role=task_role,
            execution_role=execution_role,
        )
        self.task.add_container(
            "Fleet",
            container_name=naming.FLEET_CONTAINER_NAME,
            image=image,
            entry_point=list(naming.FLEET_ENTRY_POINT),
            cpu=naming.TASK_CPU,
            memory_limit_mib=naming.TASK_MEMORY_MIB,
            logging=log_driver,
            environment=environment,
            stop_timeout=cdk.Duration.seconds(30),
        )
        acknowledge(self.task, "AwsSolutions-ECS2", "the variables hold resource names and settings, no secrets")
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task,
            assign_public_ip=True,
            security_groups=[ec2.SecurityGroup.from_security_group_id(self, "WorkerSecurityGroup", imported(env_name, "SecurityGroupId"))],
            **service_rules(),
        )
        # The network stack's public subnets (no NAT gateway), by their exported ids like the other
        # imports, so the network stack's outputs stay the documented keys.
        service = self.service.node.default_child
        service.network_configuration = ecs.CfnService.NetworkConfigurationProperty(
            awsvpc_configuration=ecs.CfnService.AwsVpcConfigurationProperty(
                assign_public_ip="ENABLED",
                subnets=cdk.Fn.split(",", imported(env_name, "SubnetIds")),
                security_groups=[imported(env_name, "SecurityGroupId")],
            )
        )
        scale_on_streams_per_worker(self.service, env_name, naming.FLEET_MAX_WORKERS)

"""Where the worker runs: an ECS cluster and a Fargate task definition.

The task role grants exactly the calls the worker makes (see worker/): read the stream, write
frames, read and write its checkpoint, send results, read the rules in force, publish events. Settings reach the worker as environment
variables; `kinase run-task` overrides them per run.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import naming
from infra.stacks.dashboard import WorkerDashboard
from infra.stacks.fleet import WorkerFleet, fleet_environment, grant_streams
from infra.stacks.gpu import GpuWorkers
from infra.stacks.nag import acknowledge
from infra.stacks.outputs import export_name, imported, output
from infra.stacks.stream import stream_arn
from worker.layout import CHECKPOINTS_PREFIX, FRAMES_PREFIX, INPUTS_PREFIX, RULES_PREFIX
from worker.settings import DEFAULT_MODEL, environment
from worker.sources.kinds import kvs_source

CONTAINER_NAME = "worker"
TASK_CPU = naming.TASK_CPU
TASK_MEMORY_MIB = naming.TASK_MEMORY_MIB
# What the template names before `kinase push-image` has pinned a digest (tags are immutable, so no
# build is ever pushed under it by kinase; `kinase deploy` passes the pinned digest back in).
UNPUSHED_TAG = "latest"


def region_environment() -> dict[str, str]:
    """The stack's region for every container: the worker's boto3 finds no region otherwise on EC2 (bridge-mode
    containers get AWS_REGION only from ECS agents newer than amazon-ecs-agent PR #4946, and IMDSv2 with hop
    limit 1 keeps them from the instance metadata). botocore reads AWS_DEFAULT_REGION, other SDKs AWS_REGION."""
    return {"AWS_REGION": cdk.Aws.REGION, "AWS_DEFAULT_REGION": cdk.Aws.REGION}


class ComputeStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        vpc: ec2.IVpc,
        stream_name: str,
        input_buckets: Sequence[str] = (),
        image_digest: str | None = None,
        gpu_instance_type: str | None = None,
        gpu_image_digest: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        bucket = s3.Bucket.from_bucket_name(self, "FramesBucket", imported(env_name, "FramesBucketName"))
        queue = sqs.Queue.from_queue_attributes(
            self, "ResultsQueue", queue_arn=imported(env_name, "ResultsQueueArn"), queue_url=imported(env_name, "ResultsQueueUrl")
        )
        repository = ecr.Repository.from_repository_name(self, "WorkerRepository", imported(env_name, "RepositoryName"))
        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
        log_group = logs.LogGroup(
            self,
            "WorkerLogs",
            log_group_name=f"/kinase/{env_name}/worker",
            retention=logs.RetentionDays.TWO_WEEKS,  # naming.LOG_RETENTION_DAYS (a test keeps them equal)
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

        task_role = iam.Role(self, "TaskRole", assumed_by=self._ecs_tasks(), description="kinase worker")
        execution_role = iam.Role(self, "ExecutionRole", assumed_by=self._ecs_tasks(), description="kinase worker: image pull and logs")
        task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadStream",
                actions=["kinesisvideo:DescribeStream", "kinesisvideo:GetDataEndpoint", "kinesisvideo:GetMedia"],
                resources=[stream_arn(self, stream_name)],
            )
        )
        task_role.add_to_policy(
            iam.PolicyStatement(sid="WriteFrames", actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{FRAMES_PREFIX}*")])
        )
        task_role.add_to_policy(
            iam.PolicyStatement(
                sid="Checkpoint", actions=["s3:GetObject", "s3:PutObject"], resources=[bucket.arn_for_objects(f"{CHECKPOINTS_PREFIX}*")]
            )
        )
        task_role.add_to_policy(
            # Without ListBucket a missing checkpoint reads as AccessDenied instead of NoSuchKey.
            iam.PolicyStatement(
                sid="FindCheckpoint",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{CHECKPOINTS_PREFIX}*"]}},
            )
        )
        task_role.add_to_policy(iam.PolicyStatement(sid="SendResults", actions=["sqs:SendMessage"], resources=[queue.queue_arn]))
        task_role.add_to_policy(
            iam.PolicyStatement(sid="ReadInputs", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{INPUTS_PREFIX}*")])
        )
        task_role.add_to_policy(
            iam.PolicyStatement(sid="ReadRules", actions=["s3:GetObject"], resources=[bucket.arn_for_objects(f"{RULES_PREFIX}*")])
        )
        task_role.add_to_policy(
            # as FindCheckpoint: rules never applied read as NoSuchKey, not AccessDenied
            iam.PolicyStatement(
                sid="FindRules",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{RULES_PREFIX}*"]}},
            )
        )
        events_topic_arn = imported(env_name, "EventsTopicArn")
        # The topic's key is alias/aws/sns, whose key policy admits the account's principals through SNS: no KMS grant here.
        task_role.add_to_policy(iam.PolicyStatement(sid="PublishEvents", actions=["sns:Publish"], resources=[events_topic_arn]))
        extra_inputs = [f"arn:{self.partition}:s3:::{name}/*" for name in input_buckets]
        if extra_inputs:
            task_role.add_to_policy(iam.PolicyStatement(sid="ReadInputBuckets", actions=["s3:GetObject"], resources=extra_inputs))
        lease_table_name = imported(env_name, "LeaseTableName")
        grant_streams(self, task_role, env_name, lease_table_name)
        bucket_objects = f"arn:<AWS::Partition>:s3:::{export_name(naming.stack_name(env_name, 'storage'), 'FramesBucketName')}"
        for rule, reason in (
            (
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kinesisvideo:<AWS::Region>:<AWS::AccountId>:stream/{stream_name}/*]",
                "a Kinesis Video stream ARN ends in its creation time; the wildcard covers only that suffix of this one stream",
            ),
            (
                f"AwsSolutions-IAM5[Resource::{bucket_objects}/{FRAMES_PREFIX}*]",
                f"the worker writes one object per frame under {FRAMES_PREFIX} only",
            ),
            (
                f"AwsSolutions-IAM5[Resource::{bucket_objects}/{CHECKPOINTS_PREFIX}*]",
                f"the worker reads and writes its checkpoint under {CHECKPOINTS_PREFIX} only",
            ),
            (
                f"AwsSolutions-IAM5[Resource::{bucket_objects}/{RULES_PREFIX}*]",
                "the worker reads the rules in force (`kinase rules apply` stores them under rules/) only",
            ),
            (
                f"AwsSolutions-IAM5[Resource::{bucket_objects}/{INPUTS_PREFIX}*]",
                "the worker reads the videos `kinase run-task --source FILE` uploads under inputs/ only",
            ),
            *(
                (
                    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{name}/*]",
                    "an input bucket the operator allowed with `kinase deploy --input-bucket`: read-only, its objects only",
                )
                for name in input_buckets
            ),
        ):
            acknowledge(task_role, rule, reason)

        task = ecs.FargateTaskDefinition(
            self,
            "WorkerTask",
            family=naming.worker_family(env_name),
            cpu=TASK_CPU,
            memory_limit_mib=TASK_MEMORY_MIB,
            task_role=task_role,
            execution_role=execution_role,
        )
        task.add_container(
            "Worker",
            container_name=CONTAINER_NAME,
            image=ecs.ContainerImage.from_ecr_repository(repository, image_digest or UNPUSHED_TAG),
            cpu=TASK_CPU,
            memory_limit_mib=TASK_MEMORY_MIB,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="worker", log_group=log_group),
            environment={
                **environment(
                    source=kvs_source(stream_name),
                    bucket=bucket.bucket_name,
                    queue_url=queue.queue_url,
                    events_topic_arn=events_topic_arn,
                    model=DEFAULT_MODEL,
                ),
                **region_environment(),
            },
            stop_timeout=cdk.Duration.seconds(30),
        )
        acknowledge(task, "AwsSolutions-ECS2", "the variables hold resource names and settings, no secrets")
        acknowledge(
            execution_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken (added by CDK for the image pull) supports no resource-level permissions",
        )

        fleet_settings = {
            **fleet_environment(
                env_name=env_name,
                bucket_name=bucket.bucket_name,
                queue_url=queue.queue_url,
                events_topic_arn=events_topic_arn,
                model=DEFAULT_MODEL,
                lease_table_name=lease_table_name,
            ),
            **region_environment(),
        }
        fleet = WorkerFleet(
            self,
            "Fleet",
            env_name=env_name,
            cluster=cluster,
            image=ecs.ContainerImage.from_ecr_repository(repository, image_digest or UNPUSHED_TAG),
            task_role=task_role,
            execution_role=execution_role,
            log_driver=ecs.LogDrivers.aws_logs(stream_prefix="fleet", log_group=log_group),
            environment=fleet_settings,
        )
        services = {"fleet": fleet.service.service_name}
        if gpu_instance_type:
            gpu = GpuWorkers(
                self,
                "Gpu",
                env_name=env_name,
                instance_type=gpu_instance_type,
                vpc=vpc,
                cluster=cluster,
                image=ecs.ContainerImage.from_ecr_repository(repository, gpu_image_digest or UNPUSHED_TAG),
                task_role=task_role,
                execution_role=execution_role,
                log_group=log_group,
                environment={
                    **environment(
                        source=kvs_source(stream_name),
                        bucket=bucket.bucket_name,
                        queue_url=queue.queue_url,
                        events_topic_arn=events_topic_arn,
                        model=DEFAULT_MODEL,
                    ),
                    **region_environment(),
                },
                fleet_environment=fleet_settings,
            )
            output(self, "GpuTaskDefinitionFamily", gpu.task.family)
            output(self, "GpuCapacityProviderName", gpu.capacity_provider.capacity_provider_name)
            output(self, "GpuFleetServiceName", gpu.fleet_service.service_name)
            services["fleet (GPU)"] = gpu.fleet_service.service_name
        WorkerDashboard(
            self,
            "Dashboard",
            env_name=env_name,
            streams=[stream_name],
            cluster_name=cluster.cluster_name,
            services=services,
            queue_name=queue.queue_name,
            dead_letter_queue_name=cdk.Fn.select(4, cdk.Fn.split("/", imported(env_name, "DeadLetterQueueUrl"))),
        )
        output(self, "ClusterName", cluster.cluster_name)
        output(self, "TaskDefinitionArn", task.task_definition_arn)
        output(self, "TaskDefinitionFamily", task.family)
        output(self, "ContainerName", CONTAINER_NAME)
        output(self, "LogGroupName", log_group.log_group_name)
        output(self, "TaskRoleArn", task_role.role_arn)
        output(self, "ExecutionRoleArn", execution_role.role_arn)
        output(self, "FleetServiceName", fleet.service.service_name)

    def _ecs_tasks(self) -> iam.ServicePrincipal:
        """ECS tasks of this account and region only (the confused-deputy guard of the ECS task-role docs)."""
        return iam.ServicePrincipal(
            "ecs-tasks.amazonaws.com",
            conditions={
                "ArnLike": {"aws:SourceArn": f"arn:{self.partition}:ecs:{self.region}:{self.account}:*"},
                "StringEquals": {"aws:SourceAccount": self.account},
            },
        )

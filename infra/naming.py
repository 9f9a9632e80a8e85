"""Stack names and output keys shared by the CDK app and the CLI (no aws_cdk import here).

Every value the CLI needs comes from a stack output; these are their keys. Stack names carry the
environment name so that several environments can live in one account.

Environments never overlap. Every name is `kinase-<env>-<part>` and an environment name has no `-`
(`[a-z][a-z0-9]*`, checked once by kinase_cli/options.py for every command), so the `-` after the
environment ends it: `kinase-prod-` begins no name of environment `prodeu` or any other, and the
stack, lease table, repository, family and stream names of two environments never collide
(tests/cli/test_env_names.py checks it over names). Before this rule `prod-eu` was a valid name and
`kinase-prod-` the prefix of its streams; such streams still exist, so a stream is the environment's
only when it also carries the tag ENV_TAG=<env> (`kinase stream create` sets it, CloudFormation
gives the stack's own stream the stacks' tags, `kinase stream adopt` tags camera streams): stream
listing, removal, `fleet up`'s leasing and the task role's IAM statements all require it.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_ENV = "dev"

# `cdk -c KEY=VALUE` keys the CLI passes to the app (infra/app.py).
CONTEXT_ENV = "env"
CONTEXT_INPUT_BUCKETS = "input_buckets"  # comma-separated bucket names the worker may read
CONTEXT_IMAGE_DIGEST = "image_digest"  # sha256:... pinned by `kinase push-image`
CONTEXT_GPU_INSTANCE_TYPE = "gpu_instance_type"  # `kinase deploy --gpu`: GPU workers on ECS on EC2
CONTEXT_GPU_IMAGE_DIGEST = "gpu_image_digest"  # sha256:... pinned by `kinase push-image --variant gpu`
DEFAULT_GPU_INSTANCE_TYPE = "g4dn.xlarge"  # 1 NVIDIA T4, 4 vCPU, 16 GiB

# Availability zones of the network: one public subnet each (SubnetIds lists them).
MAX_AZS = 2

# Sizes and retention periods the stacks set and `kinase cost` prices.
TASK_CPU = 1024
TASK_MEMORY_MIB = 2048
FRAMES_EXPIRE_DAYS = 14
STREAM_RETENTION_HOURS = 24
LOG_RETENTION_DAYS = 14

# The fleet (infra/stacks/fleet.py): the service scales on streams per worker between 0 and this many tasks.
FLEET_MAX_WORKERS = 10
FLEET_STREAMS_PER_WORKER = 4
FLEET_MAX_STREAMS_PER_WORKER = 8  # KINASE_MAX_STREAMS of the fleet's tasks: headroom above the scaling target
FLEET_CONTAINER_NAME = "fleet"
FLEET_ENTRY_POINT = ("python", "-m", "worker.fleet")
GPU_MAX_WORKERS = 2  # the GPU fleet's most tasks; a GPU task takes a whole instance
# The GPU workers' Auto Scaling group (infra/stacks/gpu.py): room for every worker twice, since a 100/200 rolling
# deployment starts the new tasks before the old ones stop; with the group at GPU_MAX_WORKERS a roll would stall.
GPU_MAX_INSTANCES = 2 * GPU_MAX_WORKERS
# A GPU task's size (infra/stacks/gpu.py): what a g4dn.xlarge (4 vCPU, 16 GiB) leaves after the ECS agent and the OS,
# which keep GPU_HOST_CPU and GPU_HOST_MEMORY_MIB of any instance (`deploy --gpu` refuses a type too small for the rest).
GPU_TASK_CPU = 3584
GPU_TASK_MEMORY_MIB = 14336
GPU_HOST_CPU = 512
GPU_HOST_MEMORY_MIB = 2048
# An environment's streams carry ENV_TAG=<env>: created ones are also named with its prefix (`stream_prefix`).
ENV_TAG = "kinase:env"

# Deploy order; destroy runs it backwards.
CONCERNS = ("network", "storage", "stream", "registry", "compute")

# Output key -> the stack (concern) that exports it.
OUTPUTS = {
    "VpcId": "network",
    "SubnetIds": "network",  # comma-separated
    "SecurityGroupId": "network",
    "FramesBucketName": "storage",
    "ResultsQueueUrl": "storage",
    "ResultsQueueArn": "storage",
    "DeadLetterQueueUrl": "storage",
    "LeaseTableName": "storage",  # one lease (and checkpoint) per stream of the fleet
    "EventsTopicArn": "storage",  # workers publish events here; `kinase notify` subscribes to it
    "EventsQueueUrl": "storage",  # subscribed to the topic with raw delivery: `kinase events` reads it
    "StreamName": "stream",
    "StreamRetentionHours": "stream",
    "RepositoryName": "registry",
    "RepositoryUri": "registry",
    "ClusterName": "compute",
    "TaskDefinitionArn": "compute",
    "TaskDefinitionFamily": "compute",
    "ContainerName": "compute",
    "LogGroupName": "compute",
    "TaskRoleArn": "compute",
    "ExecutionRoleArn": "compute",
    "FleetServiceName": "compute",
    "DashboardUrl": "compute",  # the CloudWatch dashboard (infra/stacks/dashboard.py)
    "GpuTaskDefinitionFamily": "compute",  # only with `kinase deploy --gpu`
    "GpuCapacityProviderName": "compute",  # only with `kinase deploy --gpu`
    "GpuFleetServiceName": "compute",  # only with `kinase deploy --gpu`: the fleet on the GPU instances
}
# Outputs a stack has only when its feature is deployed.
OPTIONAL_OUTPUTS = frozenset({"GpuTaskDefinitionFamily", "GpuCapacityProviderName", "GpuFleetServiceName"})


def _name(*parts: str) -> Callable[[str], str]:
    """One resource's name in an environment: `kinase-<env>-<parts>`, so an environment's resources sort together."""
    return lambda env: "-".join(("kinase", env, *parts))


stream_name = _name("video")
worker_family = _name("worker")  # the one-off task (infra/stacks/compute.py)
repository_name = _name("worker")
fleet_family = _name("fleet")
gpu_family = _name("worker", "gpu")
gpu_fleet_family = _name("fleet", "gpu")
gpu_capacity_provider = _name("gpu")
dashboard_name = _name()
# Fixed (the storage stack's name + `-leases`), so the CLI finds the leases without reading stack outputs.
lease_table_name = _name("storage", "leases")


def stack_name(env: str, concern: str) -> str:
    return _name(concern)(env)


def stack_names(env: str) -> list[str]:
    return [stack_name(env, c) for c in CONCERNS]


def stream_prefix(env: str) -> str:
    """Streams whose names start with this belong to the environment (`kinase stream create NAME` adds it)."""
    return _name("")(env)


def split_list(value: str | None) -> list[str]:
    """A comma-separated context value as a list (cdk passes every `-c` value as a string)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]

"""Stack names and output keys shared by the CDK app and the CLI (no aws_cdk import here).

Every value the CLI needs comes from a stack output; these are their keys. Stack names carry the
environment name so that several environments can live in one account.
"""

from __future__ import annotations

DEFAULT_ENV = "dev"

# `cdk -c KEY=VALUE` keys the CLI passes to the app (infra/app.py).
CONTEXT_ENV = "env"
CONTEXT_INPUT_BUCKETS = "input_buckets"  # comma-separated bucket names the worker may read
CONTEXT_IMAGE_DIGEST = "image_digest"  # sha256:... pinned by `kinase push-image`

# Sizes and retention periods the stacks set and `kinase cost` prices.
TASK_CPU = 1024
TASK_MEMORY_MIB = 2048
FRAMES_EXPIRE_DAYS = 14
STREAM_RETENTION_HOURS = 24
LOG_RETENTION_DAYS = 14

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
    "DashboardUrl": "compute",  # the CloudWatch dashboard (infra/stacks/dashboard.py)
}


def stack_name(env: str, concern: str) -> str:
    return f"kinase-{env}-{concern}"


def stack_names(env: str) -> list[str]:
    return [stack_name(env, c) for c in CONCERNS]


def stream_name(env: str) -> str:
    return f"kinase-{env}-video"


def repository_name(env: str) -> str:
    return f"kinase-{env}-worker"


def dashboard_name(env: str) -> str:
    return f"kinase-{env}"


def split_list(value: str | None) -> list[str]:
    """A comma-separated context value as a list (cdk passes every `-c` value as a string)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]

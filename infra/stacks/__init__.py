"""The kinase stacks, one per concern, wired together by `build`."""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk

from infra import naming
from infra.stacks.compute import ComputeStack
from infra.stacks.network import NetworkStack
from infra.stacks.registry import RegistryStack
from infra.stacks.storage import StorageStack
from infra.stacks.stream import StreamStack

# Feature flags this app relies on (new projects get them from `cdk init`).
FEATURE_FLAGS = {
    # Grant S3 server access logging through a bucket policy instead of the legacy ACL.
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def new_app(**kwargs) -> cdk.App:
    """The App with the feature flags above; the CLI's context (`-c env=NAME`) is merged in by CDK."""
    return cdk.App(context={**FEATURE_FLAGS, **kwargs.pop("context", {})}, **kwargs)


def build(
    app: cdk.App,
    env: str = naming.DEFAULT_ENV,
    *,
    input_buckets: Sequence[str] = (),
    image_digest: str | None = None,
    gpu_instance_type: str | None = None,
    gpu_image_digest: str | None = None,
) -> dict[str, cdk.Stack]:
    """Add the stacks of environment `env` to `app`; returns them by concern.

    `input_buckets`: other buckets the worker may read sources from (`kinase deploy --input-bucket`);
    `image_digest`: the image `kinase push-image` pinned, so a redeploy keeps running it.
    `gpu_instance_type`: GPU workers on ECS on EC2 (`kinase deploy --gpu`), with `gpu_image_digest`.
    """

    def props(concern: str) -> dict:
        return {"stack_name": naming.stack_name(env, concern), "description": f"kinase {env}: {concern}"}

    network = NetworkStack(app, naming.stack_name(env, "network"), **props("network"))
    storage = StorageStack(app, naming.stack_name(env, "storage"), **props("storage"))
    stream = StreamStack(app, naming.stack_name(env, "stream"), stream_name=naming.stream_name(env), **props("stream"))
    registry = RegistryStack(app, naming.stack_name(env, "registry"), repository_name=naming.repository_name(env), **props("registry"))
    compute = ComputeStack(
        app,
        naming.stack_name(env, "compute"),
        env_name=env,
        vpc=network.vpc,
        stream_name=naming.stream_name(env),
        input_buckets=input_buckets,
        image_digest=image_digest,
        gpu_instance_type=gpu_instance_type,
        gpu_image_digest=gpu_image_digest,
        **props("compute"),
    )
    for producer in (network, storage, stream, registry):
        compute.add_stack_dependency(producer, "the worker task uses its resources")
    stacks = {"network": network, "storage": storage, "stream": stream, "registry": registry, "compute": compute}
    for stack in stacks.values():
        cdk.Tags.of(stack).add(naming.ENV_TAG, env)
    return stacks

"""The worker image repository; `kinase push-image` pushes one unique tag per build here.

Tags are immutable (checkov CKV_AWS_51): a tag names one image forever, and the task definition
runs a digest, so nothing a later push does changes what a running environment starts.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from infra.stacks.outputs import output

KEEP_IMAGES = 10


class RegistryStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, *, repository_name: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.repository = ecr.Repository(
            self,
            "WorkerRepository",
            repository_name=repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            lifecycle_rules=[ecr.LifecycleRule(description=f"keep the last {KEEP_IMAGES} images", max_image_count=KEEP_IMAGES)],
            removal_policy=cdk.RemovalPolicy.DESTROY,
            empty_on_delete=True,
        )
        output(self, "RepositoryName", export=True, value=self.repository.repository_name)
        output(self, "RepositoryUri", self.repository.repository_uri)

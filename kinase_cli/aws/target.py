"""Which AWS a command talks to, and the one AWS session factory.

A `Target` is built from the common options (`--profile`, `--region`, `--local`, `--env`); every
boto3 client and every child process environment (cdk, the local worker) comes from it, so the
local stack's endpoints and fake credentials are applied in exactly one place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from infra import naming
from kinase_cli import paths
from kinase_cli.ui.errors import KinaseError

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def known_regions() -> list[str]:
    """Every region in botocore's endpoint data (all partitions)."""
    from botocore.loaders import create_loader

    data = create_loader().load_data("endpoints")
    return sorted({region for partition in data["partitions"] for region in partition.get("regions", {})})


def check_region(region: str) -> str:
    """`region` when botocore knows it; otherwise a one-line error with the closest names."""
    import difflib

    known = known_regions()
    if region in known:
        return region
    from kinase_cli.ui.text import visible

    close = difflib.get_close_matches(region, known, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "see `aws account list-regions`"
    raise KinaseError(f"unknown AWS region '{visible(region, limit=60)}'", hint, exit_code=2)


@dataclass(frozen=True)
class LocalEndpoints:
    """Endpoints of a running local stack, as written by `kinase local up`."""

    aws: str  # moto server: S3, SQS, ECR, ECS, Logs, CloudFormation, IAM, STS, SSM
    kinesis_video: str  # the local Kinesis Video endpoint (control plane + media)

    @staticmethod
    def state_file():
        return paths.local_dir() / "state.json"

    @classmethod
    def load(cls) -> LocalEndpoints:
        try:
            state = json.loads(cls.state_file().read_text())
            return cls(aws=state["aws_endpoint"], kinesis_video=state["kinesis_video_endpoint"])
        except (FileNotFoundError, KeyError, ValueError):
            raise KinaseError("the local stack is not running", "start it with `kinase local up`") from None


@dataclass(frozen=True)
class Target:
    profile: str | None = None
    region: str | None = None
    local: bool = False
    env: str = naming.DEFAULT_ENV
    _clients: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def endpoints(self) -> LocalEndpoints | None:
        return LocalEndpoints.load() if self.local else None

    @cached_property
    def session(self):
        import boto3

        from worker import callrecord

        if self.local:
            session = boto3.Session(
                aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                region_name=self.region or LOCAL_REGION,
            )
        else:
            session = boto3.Session(profile_name=self.profile, region_name=self.region)
            if not session.region_name:
                raise KinaseError("no AWS region configured", "pass --region or set AWS_REGION")
        callrecord.install(session.events, "cli")
        return session

    @property
    def region_name(self) -> str:
        return self.session.region_name

    def endpoint_for(self, service: str) -> str | None:
        if not self.local:
            return None
        if service == "kinesisvideo":
            return self.endpoints.kinesis_video
        return self.endpoints.aws

    def client(self, service: str, endpoint_url: str | None = None, **config: Any):
        """A cached boto3 client with standard retries (throttling and 5xx are retried)."""
        key = (service, endpoint_url, tuple(sorted(config.items())))
        if key not in self._clients:
            from botocore.config import Config

            cfg = Config(retries={"mode": "standard", "max_attempts": 8}, **config)
            self._clients[key] = self.session.client(service, endpoint_url=endpoint_url or self.endpoint_for(service), config=cfg)
        return self._clients[key]

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process (cdk, the local worker) that should see this target."""
        env = dict(os.environ if base is None else base)
        if self.local:
            env.update(LOCAL_CREDENTIALS)
            env.pop("AWS_PROFILE", None)
            env.pop("AWS_SESSION_TOKEN", None)
            env["AWS_ENDPOINT_URL"] = self.endpoints.aws
            env["AWS_ENDPOINT_URL_KINESIS_VIDEO"] = self.endpoints.kinesis_video
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region or LOCAL_REGION
            env["CDK_DEFAULT_ACCOUNT"] = LOCAL_ACCOUNT
            env["CDK_DEFAULT_REGION"] = env["AWS_REGION"]
        else:
            if self.profile:
                env["AWS_PROFILE"] = self.profile
            if self.region:
                env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        return env

    def stack_name(self, concern: str) -> str:
        return naming.stack_name(self.env, concern)

    def hint_flag(self) -> str:
        """The flags to repeat in a suggested command so it targets the same place."""
        parts = []
        if self.local:
            parts.append("--local")
        if self.env != naming.DEFAULT_ENV:
            parts.append(f"--env {self.env}")
        if self.profile:
            parts.append(f"--profile {self.profile}")
        if self.region and not self.local:
            parts.append(f"--region {self.region}")
        return (" " + " ".join(parts)) if parts else ""

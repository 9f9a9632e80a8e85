"""The worker's task definition: which revision runs, what it gives the worker, and pinning an image.

`run-task` starts the newest ACTIVE revision of the stack's task-definition family. `push-image`
registers a copy of that revision with the image replaced by `repository@sha256:digest`, so the newest
revision is pinned to the image just pushed; nothing is stored on the operator's machine, so a push
from one machine is what a run from another starts. A later `kinase deploy` reads that digest back
from the newest revision and passes it to the app, so the revision CloudFormation registers runs the
same image (the repository's tags are immutable; there is no moving `latest`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kinase_cli.aws.outputs import StackOutputs
from kinase_cli.aws.target import Target
from kinase_cli.ui.errors import KinaseError

# Keys of DescribeTaskDefinition's answer that RegisterTaskDefinition accepts back.
REGISTER_KEYS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
)


@dataclass(frozen=True)
class ImageRef:
    repository: str  # registry/name
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        if "@" in image:
            repo, digest = image.split("@", 1)
            return cls(repo, None, digest)
        head, _, last = image.rpartition("/")
        if ":" in last:
            name, tag = last.rsplit(":", 1)
            return cls(f"{head}/{name}" if head else name, tag, None)
        return cls(image, "latest", None)

    @property
    def name(self) -> str:
        """The repository name without the registry host."""
        return self.repository.split("/", 1)[1] if "/" in self.repository else self.repository

    def ecr_id(self) -> dict:
        return {"imageDigest": self.digest} if self.digest else {"imageTag": self.tag}


def family(outputs: StackOutputs) -> str:
    return outputs.get("TaskDefinitionFamily") or outputs["TaskDefinitionArn"].rsplit("/", 1)[-1].rsplit(":", 1)[0]


def current(target: Target, outputs: StackOutputs, family_name: str | None = None) -> dict:
    """The newest ACTIVE revision of the worker's family, or of `family_name` (what `run-task` starts)."""
    return target.client("ecs").describe_task_definition(taskDefinition=family_name or family(outputs))["taskDefinition"]


def container(definition: dict, name: str) -> dict:
    for c in definition["containerDefinitions"]:
        if c["name"] == name:
            return c
    raise KinaseError(
        f"task definition {definition['family']} has no container named {name}",
        "redeploy the compute stack with `kinase deploy`",
    )


def environment(definition: dict, name: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(definition, name).get("environment", [])}


def log_stream_prefix(definition: dict, name: str) -> str | None:
    """`prefix/container` of the awslogs streams; a task's stream is `<that>/<task id>`."""
    options = (container(definition, name).get("logConfiguration") or {}).get("options", {})
    prefix = options.get("awslogs-stream-prefix")
    return f"{prefix}/{name}" if prefix else None


def register_pinned(target: Target, outputs: StackOutputs, image: str, family_name: str | None = None) -> dict:
    """Register a copy of the current revision (of `family_name`, default the worker's) whose worker container runs `image`."""
    ecs = target.client("ecs")
    answer = ecs.describe_task_definition(taskDefinition=family_name or family(outputs), include=["TAGS"])
    definition = answer["taskDefinition"]
    name = outputs["ContainerName"]
    container(definition, name)
    request = {k: definition[k] for k in REGISTER_KEYS if definition.get(k) not in (None, [], {})}
    request["containerDefinitions"] = [{**c, "image": image} if c["name"] == name else c for c in definition["containerDefinitions"]]
    if answer.get("tags"):
        request["tags"] = answer["tags"]
    return ecs.register_task_definition(**request)["taskDefinition"]

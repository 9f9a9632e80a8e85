"""The worker's task definitions: which revision runs, what it gives the worker, pinning an image, and
checking that the image is there.

`run-task` starts the newest ACTIVE revision of the stack's worker family, `fleet up` the newest of
the fleet's. `push-image` registers a copy of the newest revision of every family that runs the
worker image (worker and fleet, or their GPU twins) with the image replaced by
`repository@sha256:digest`, so each newest revision is pinned to the image just pushed; nothing is
stored on the operator's machine, so a push from one machine is what a run from another starts. A
later `kinase deploy` reads that digest back from the newest revision and passes it to the app, so
the revisions CloudFormation registers run the same image (the repository's tags are immutable;
there is no moving `latest`). Before a first push the stacks name a tag that was never pushed:
`require_image` refuses to start such a revision, where ECS would loop on CannotPullContainerError.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import naming
from kinase_cli.aws.outputs import StackOutputs
from kinase_cli.aws.target import Target
from kinase_cli.ui.errors import KinaseError
from worker.retry import error_code

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
    """Register a copy of the current revision (of `family_name`, default the worker's) whose containers
    that run an image of the stack's repository (the worker's or the fleet's) run `image` instead."""
    ecs = target.client("ecs")
    answer = ecs.describe_task_definition(taskDefinition=family_name or family(outputs), include=["TAGS"])
    definition = answer["taskDefinition"]
    repository = ImageRef.parse(image).repository
    ours = [c["name"] for c in definition["containerDefinitions"] if ImageRef.parse(c.get("image", "")).repository == repository]
    if not ours:
        raise KinaseError(
            f"task definition {definition['family']} runs no image of {repository}",
            "redeploy the compute stack with `kinase deploy`",
        )
    request = {k: definition[k] for k in REGISTER_KEYS if definition.get(k) not in (None, [], {})}
    request["containerDefinitions"] = [{**c, "image": image} if c["name"] in ours else c for c in definition["containerDefinitions"]]
    if answer.get("tags"):
        request["tags"] = answer["tags"]
    return ecs.register_task_definition(**request)["taskDefinition"]


def image_families(target: Target, outputs: StackOutputs, variant: str) -> list[str]:
    """The task-definition families that run the worker image of `variant`: the one-off worker's and
    the fleet's (`cpu`), or their GPU twins (`gpu`, only after `kinase deploy --gpu`)."""
    if variant == "gpu":
        if not outputs.get("GpuTaskDefinitionFamily"):
            raise KinaseError(
                "this environment has no GPU workers to run a GPU image", f"deploy them first: `kinase deploy --gpu{target.hint_flag()}`"
            )
        return [outputs["GpuTaskDefinitionFamily"], naming.gpu_fleet_family(target.env)]
    return [family(outputs), naming.fleet_family(target.env)]


def pin(target: Target, outputs: StackOutputs, image: str, variant: str) -> list[dict]:
    """Pin every family that runs the `variant` image to `image` (repository@digest); the new revisions."""
    return [register_pinned(target, outputs, image, name) for name in image_families(target, outputs, variant)]


def require_image(target: Target, outputs: StackOutputs, definition: dict, name: str, what: str) -> str:
    """The image that container `name` of `definition` runs, refused unless the stack's repository holds
    it: ECS would only fail to pull it (CannotPullContainerError) and retry without end. `what` says
    whose revision it is ("worker", "fleet")."""
    image = container(definition, name)["image"]
    ref = ImageRef.parse(image)
    if ref.name != outputs.get("RepositoryName", ref.name):
        return image  # another repository: kinase cannot look into it
    ecr = target.client("ecr")
    try:
        ecr.describe_images(repositoryName=ref.name, imageIds=[ref.ecr_id()])
    except Exception as exc:  # botocore ClientError
        if error_code(exc) != "ImageNotFoundException":
            raise
        runs = f"the {what}'s task definition {definition['family']}:{definition['revision']} runs {image}"
        if not ecr.list_images(repositoryName=ref.name, maxResults=1)["imageIds"]:
            raise KinaseError(f"no worker image has been pushed to {ref.name} yet: {runs}", _push_hint(target)) from None
        raise KinaseError(f"the task definition's image {ref.digest or ref.tag} is not in {ref.name}: {runs}", _push_hint(target)) from None
    return image


def _push_hint(target: Target) -> str:
    if target.local:
        return f"register the source tree the local workers run as the image: `kinase push-image{target.hint_flag()} --source-tree`"
    return f"push the worker image: `kinase push-image{target.hint_flag()}`"

"""`kinase push-image`'s runner: build the worker image with docker, push it to the stack's ECR repository under a
new tag, and pin every task definition that runs it (workflows/images.py); on the local stack, register the source
tree as the image instead. The command checks its flags and prints what comes back."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass

from kinase_cli import paths
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws import taskdef
from kinase_cli.aws.outputs import StackOutputs
from kinase_cli.aws.target import Target
from kinase_cli.runners import proc
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows import images
from worker.retry import error_code

DOCKERFILE = "worker/Dockerfile"
# variant -> extra `docker build` arguments: worker/Dockerfile's VARIANT=pt adds the CUDA path (torch).
VARIANTS = {"cpu": [], "gpu": ["--build-arg", "VARIANT=pt"]}
LOCAL_NAME = "kinase-worker"
DOCKER_HINT = "install Docker (https://docs.docker.com/get-docker/) and make sure `docker` is on PATH"
DAEMON_HINT = "start Docker (Docker Desktop, or `sudo systemctl start docker`) and check that `docker info` works"

_DIGEST = re.compile(r"digest:\s*(sha256:[0-9a-f]{64})")
_LAYER = re.compile(r"^([0-9a-f]{12,64}): (.+)$")
_LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from")


@dataclass(frozen=True)
class Pushed:
    """An image pushed (or the source tree registered) and what now runs it."""

    outputs: StackOutputs
    tag: str
    variant: str
    digest: str
    pushed_at: object  # a datetime from ECR, or None
    pinning: dict  # workflows/images.pin's answer: the revisions pinned, the fleet's roll


def push(target: Target, tag: str | None, platform: str, no_build: bool, variant: str) -> Pushed:
    """Build (unless `no_build`: the local image kinase-worker:TAG), tag, log in with an ECR token on stdin, push,
    check the repository holds the digest docker reported, and pin the task definitions to it."""
    docker = _check_docker()
    outputs = stack_outputs.read(target, required=("registry", "compute"))
    uri = outputs["RepositoryUri"]
    taskdef.image_families(target, outputs, variant)  # refuses --variant gpu without GPU workers, before the build
    if no_build and not tag:
        raise KinaseError(
            "--no-build needs --tag: the tag of the local image to push",
            f"e.g. `kinase push-image --no-build --tag v1.2.0{target.hint_flag()}`",
        )
    tag = tag or _unique_tag() + ("-gpu" if variant == "gpu" else "")
    local_image = f"{LOCAL_NAME}:{tag}"
    if no_build:
        if proc.run([docker, "image", "inspect", local_image], check=False).returncode != 0:
            raise KinaseError(f"there is no local image {local_image}", "build it: drop --no-build, or pass the --tag you built")
    else:
        if not (paths.PROJECT_ROOT / DOCKERFILE).exists():
            raise KinaseError(f"{DOCKERFILE} not found in {paths.PROJECT_ROOT}", "run kinase from its source checkout")
        console.step(f"docker build {local_image} ({platform})")
        proc.run(
            [docker, "build", "--platform", platform, "-f", DOCKERFILE, *VARIANTS[variant], "-t", local_image, "."],
            cwd=paths.PROJECT_ROOT,
            on_line=_dim,
            what="docker build",
            hint=f"fix the build error above, then rerun `kinase push-image{target.hint_flag()}`",
        )
    refs = [f"{uri}:{tag}"]
    for ref in refs:
        proc.run([docker, "tag", local_image, ref], what="docker tag")
    console.step(f"docker login {uri.split('/', 1)[0]}")
    _registry_login(target, docker, uri)
    try:
        digest = _push(docker, refs[0], _dim)
    except KinaseError as exc:
        if "immutable" in exc.message or "already exists" in exc.message:
            raise KinaseError(
                f"tag {tag} already exists in {outputs['RepositoryName']}, and its tags are immutable",
                "push under a new --tag, or leave --tag out for a unique <commit>-<time> tag",
            ) from None
        raise
    try:
        image = target.client("ecr").describe_images(repositoryName=outputs["RepositoryName"], imageIds=[{"imageDigest": digest}])[
            "imageDetails"
        ][0]
    except Exception as exc:  # botocore ClientError
        if error_code(exc) == "ImageNotFoundException":
            raise KinaseError(
                f"docker reported digest {digest}, but {outputs['RepositoryName']} does not hold it",
                "check which registry `docker push` reached",
            ) from None
        raise
    return Pushed(outputs, tag, variant, digest, image.get("imagePushedAt"), images.pin(target, outputs, f"{uri}@{digest}", variant))


def push_source_tree(target: Target, variant: str) -> Pushed:
    """The local stack's image is the source tree its workers run (workflows/images.py)."""
    outputs = stack_outputs.read(target, required=("registry", "compute"))
    taskdef.image_families(target, outputs, variant)
    pushed = images.push_source_tree(target, outputs, variant)
    return Pushed(outputs, pushed["tag"], variant, pushed["digest"], pushed["pushed_at"], pushed)


def _unique_tag() -> str:
    """`<git short sha>[-dirty]-<UTC time>`: tags are immutable, so every build gets its own."""
    from datetime import datetime, timezone

    return f"{_git_tag()}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"


def _git_tag() -> str:
    """The git short sha, with `-dirty` when the working tree differs from the commit."""
    hint = "pass --tag to name the image"
    git = proc.which("git", hint)
    try:
        sha = proc.run([git, "rev-parse", "--short", "HEAD"], cwd=paths.PROJECT_ROOT, what="git rev-parse", hint=hint).output.strip()
        dirty = proc.run([git, "status", "--porcelain"], cwd=paths.PROJECT_ROOT, what="git status", hint=hint).output.strip()
    except KinaseError as exc:
        raise KinaseError("cannot name the image after the git commit", hint) from exc
    return f"{sha}-dirty" if dirty else sha


def _dim(line: str) -> None:
    console.err.print(line, style="dim", markup=False, highlight=False, soft_wrap=True)


def _check_docker() -> str:
    docker = proc.which("docker", DOCKER_HINT)
    if proc.run([docker, "info", "--format", "{{.ServerVersion}}"], check=False).returncode != 0:
        raise KinaseError("the Docker daemon is not reachable (`docker info` failed)", DAEMON_HINT)
    return docker


def _registry_login(target: Target, docker: str, repository_uri: str) -> None:
    """`docker login` to the repository's registry with an ECR token passed on stdin, never in argv or output."""
    registry = repository_uri.split("/", 1)[0]
    data = target.client("ecr").get_authorization_token(registryIds=[registry.split(".", 1)[0]])["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")

    def hide(text: str) -> str:
        return text.replace(password, "****") if password else text

    try:
        proc.run(
            [docker, "login", "--username", username, "--password-stdin", registry],
            input=password,
            on_line=lambda line: console.info(hide(line)),
            what="docker login",
            hint="check that the ECR token is valid for this registry and that the Docker daemon can reach it",
        )
    except KinaseError as exc:
        raise KinaseError(hide(exc.message), exc.hint, exc.exit_code) from None


def _push(docker: str, ref: str, on_progress: Callable[[str], None]) -> str:
    """`docker push` with a progress bar of layers done; returns the digest docker reports."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    layers: dict[str, str] = {}
    digest = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("layers"),
        TimeElapsedColumn(),
        console=console.err,
        transient=False,
    ) as progress:
        console.step(f"docker push {ref}")
        bar = progress.add_task(ref.rsplit(":", 1)[-1], total=None)

        def line(text: str) -> None:
            match = _LAYER.match(text.strip())
            if match:
                layers[match.group(1)] = match.group(2)
                done = sum(1 for status in layers.values() if status.startswith(_LAYER_DONE))
                progress.update(bar, total=len(layers), completed=done)
            else:
                on_progress(text)
            found = _DIGEST.search(text)
            if found:
                digest.append(found.group(1))

        proc.run([docker, "push", ref], on_line=line, what="docker push", hint="check the registry login and your network")
    if not digest:
        raise KinaseError(f"docker push {ref} reported no digest", "run `docker push` by hand to see its output")
    return digest[-1]

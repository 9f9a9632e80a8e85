"""`kinase push-image`: build the worker image, push it to the stack's ECR repository, pin the task definition."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Annotated, Optional

import typer

from kinase_cli import paths
from kinase_cli.aws import outputs as stack_outputs
from kinase_cli.aws import taskdef
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.runners import proc
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows import images
from worker.contract import iso
from worker.retry import error_code

DOCKERFILE = "worker/Dockerfile"
# --variant -> extra `docker build` arguments: worker/Dockerfile's VARIANT=pt adds the CUDA path (torch).
VARIANTS = {"cpu": [], "gpu": ["--build-arg", "VARIANT=pt"]}
LOCAL_NAME = "kinase-worker"
DOCKER_HINT = "install Docker (https://docs.docker.com/get-docker/) and make sure `docker` is on PATH"
DAEMON_HINT = "start Docker (Docker Desktop, or `sudo systemctl start docker`) and check that `docker info` works"

_DIGEST = re.compile(r"digest:\s*(sha256:[0-9a-f]{64})")
_LAYER = re.compile(r"^([0-9a-f]{12,64}): (.+)$")
_LAYER_DONE = ("Pushed", "Layer already exists", "Mounted from")

EPILOG = """\
Examples:

  kinase push-image                      # build, push as <git sha>-<UTC time>, pin the task definitions
  kinase push-image --tag v1.2.0
  kinase push-image --no-build --tag v1.2.0   # push kinase-worker:v1.2.0 built earlier
  kinase push-image --json
  kinase push-image --local --source-tree     # the local stack: register the source tree its workers run

Tags are immutable in the repository: each build is pushed under its own tag (by default the git commit and the UTC time, e.g. 3f2c1ab-20260131T120000Z), never `latest`, and a tag that exists already is refused. What runs next: after the push, kinase registers a new revision of every task definition that runs the worker image (the one-off worker's and the fleet's; with --variant gpu their GPU twins) whose image is the pushed digest (repository@sha256:...); `kinase run-task` and `kinase fleet up` start the newest revision, so the next task runs exactly the image just pushed, and both refuse a revision whose image is not in the repository (before the first push, the stacks name the placeholder tag `latest`, which kinase never pushes). `kinase deploy` passes that digest back to CloudFormation, so a redeploy keeps it. The registry password comes from ECR GetAuthorizationToken and reaches `docker login` on stdin only.

The local stack (`--local`) has no Docker registry a real `docker push` could reach, and its workers run from this source tree: `kinase push-image --local --source-tree` registers that tree as the image (a manifest of the worker's sources, tag source-<hash>) and pins the task definitions to it, which is what `run-task --local` and `fleet up --local` then check, as ECS would.
"""


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


@with_target
def push_image(
    tag: Annotated[
        Optional[str],
        typer.Option(
            "--tag",
            help="Image tag, new to the repository (default: the git short sha, `-dirty` if the tree has changes, and the UTC time).",
            show_default=False,
        ),
    ] = None,
    platform: Annotated[
        str, typer.Option("--platform", help="Target platform of the build (Fargate runs linux/amd64 here).")
    ] = "linux/amd64",
    no_build: Annotated[
        bool, typer.Option("--no-build", help=f"Push the local image {LOCAL_NAME}:TAG built earlier instead of building.")
    ] = False,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="cpu: the Fargate image (ONNX Runtime/OpenVINO, no torch); gpu: the CUDA image for `deploy --gpu` workers "
            "(worker/Dockerfile with VARIANT=pt), pinned in the GPU task definitions (worker and fleet).",
        ),
    ] = "cpu",
    source_tree: Annotated[
        bool,
        typer.Option(
            "--source-tree",
            help="Local stack only, no Docker: register the source tree the local workers run as the image "
            "(a manifest of the worker's sources, tag source-<hash>) and pin the task definitions to it.",
        ),
    ] = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Build the worker image, push it to the stack's ECR repository, and pin the task definitions to it."""
    if variant not in VARIANTS:
        raise KinaseError(f"--variant {variant!r} is not one of {', '.join(VARIANTS)}", "e.g. `--variant gpu`", exit_code=2)
    if source_tree:
        _push_source_tree(target, variant, tag, no_build, json_)
        return
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
    pinned = images.pin(target, outputs, f"{uri}@{digest}", variant)
    _report(outputs, tag, variant, digest, image.get("imagePushedAt"), pinned, json_)


def _push_source_tree(target: Target, variant: str, tag: str | None, no_build: bool, json_: bool) -> None:
    """`--source-tree`: the local stack's image is the source tree its workers run (workflows/images.py)."""
    if not target.local:
        raise KinaseError(
            "--source-tree registers the source tree the local stack's workers run; tasks on AWS run a built image",
            "drop --source-tree: `kinase push-image` builds and pushes the image",
            exit_code=2,
        )
    if tag or no_build:
        raise KinaseError("--source-tree names its image after the sources (source-<hash>)", "drop --tag and --no-build", exit_code=2)
    outputs = stack_outputs.read(target, required=("registry", "compute"))
    taskdef.image_families(target, outputs, variant)
    pushed = images.push_source_tree(target, outputs, variant)
    _report(outputs, pushed["tag"], variant, pushed["digest"], pushed["pushed_at"], pushed, json_)


def _report(outputs, tag: str, variant: str, digest: str, pushed_at, pinning: dict, json_: bool) -> None:
    """`pinning`: workflows/images.pin's answer (the revisions pinned, the fleet's roll)."""
    uri, pinned, rolled = outputs["RepositoryUri"], pinning["pinned"], pinning["fleet"]
    data = {
        "repository": uri,
        "tags": [tag],
        "variant": variant,
        "digest": digest,
        "image": f"{uri}@{digest}",
        "pushed_at": iso(pushed_at) if pushed_at else None,
        "task_definition_arn": pinned[0]["taskDefinitionArn"],
        "task_definition_arns": [p["taskDefinitionArn"] for p in pinned],
        "fleet": rolled,
    }
    if json_:
        jsonout.emit("push-image", data)
        return
    console.out.print(f"pushed {uri}:{tag}", highlight=False, soft_wrap=True)
    console.out.print(f"digest {digest}", highlight=False, soft_wrap=True)
    for revision in pinned:
        console.out.print(
            f"task definition {revision['family']}:{revision['revision']} now runs {uri}@{digest}", highlight=False, soft_wrap=True
        )
        console.out.print(f"  {revision['taskDefinitionArn']}", highlight=False, soft_wrap=True)
    if rolled["rolled"]:
        where = (
            f"{len(rolled['workers'])} local workers"
            if rolled["local"]
            else f"service {rolled['service']} ({rolled['desired_count']} tasks)"
        )
        console.out.print(f"fleet: {where} rolled to {rolled['task_definition']}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("push-image", help=push_image.__doc__, epilog=EPILOG)(push_image)

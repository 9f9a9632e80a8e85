"""`kinase push-image`: build the worker image, push it to the stack's ECR repository, pin the task definition."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows import push_image as push_workflow
from worker.contract import iso

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
        bool, typer.Option("--no-build", help=f"Push the local image {push_workflow.LOCAL_NAME}:TAG built earlier instead of building.")
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
    if variant not in push_workflow.VARIANTS:
        raise KinaseError(f"--variant {variant!r} is not one of {', '.join(push_workflow.VARIANTS)}", "e.g. `--variant gpu`", exit_code=2)
    if source_tree:
        if not target.local:
            raise KinaseError(
                "--source-tree registers the source tree the local stack's workers run; tasks on AWS run a built image",
                "drop --source-tree: `kinase push-image` builds and pushes the image",
                exit_code=2,
            )
        if tag or no_build:
            raise KinaseError("--source-tree names its image after the sources (source-<hash>)", "drop --tag and --no-build", exit_code=2)
        _report(push_workflow.push_source_tree(target, variant), json_)
    else:
        _report(push_workflow.push(target, tag, platform, no_build, variant), json_)


def _report(pushed: push_workflow.Pushed, json_: bool) -> None:
    tag, variant, digest, pushed_at = pushed.tag, pushed.variant, pushed.digest, pushed.pushed_at
    uri, pinned, rolled = pushed.outputs["RepositoryUri"], pushed.pinning["pinned"], pushed.pinning["fleet"]
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

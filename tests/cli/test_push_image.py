"""`kinase push-image` on the local stack, with a recording fake `docker` (no engine here).

The fake's push puts an image manifest into the stack's ECR repository (what a real push does) and
reports its digest; some tests put a manifest themselves and have the fake report that digest
(FAKE_DOCKER_DIGEST), or one the registry does not hold. The check that ECR holds the pushed digest
and the task-definition pinning run for real against moto.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from infra import naming
from support.cli import ROOT, kinase, one_error_line
from support.ops import aws_env, docker_calls, fake_docker, local, newest_task_definition, path_without_docker, put_image

pytestmark = pytest.mark.e2e


@pytest.fixture
def docker(tmp_path):
    """Environment with the fake docker first on PATH; `.log` is its call record."""
    bin_dir = tmp_path / "bin"
    fake_docker(bin_dir)
    log = tmp_path / "docker-calls.jsonl"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log)}
    return env, log


def ecr_password() -> str:
    import base64

    token = local().client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode().partition(":")[2]


def test_build_tag_login_push_sequence_and_pinned_task_definition(deployed_stack, docker):
    env, log = docker
    uri = deployed_stack["RepositoryUri"]
    registry = uri.split("/")[0]
    digest = put_image(deployed_stack, "t1", "sequence")
    proc = kinase("push-image", "--local", "--tag", "t1", env={**env, "FAKE_DOCKER_DIGEST": digest})
    assert proc.returncode == 0, proc.stderr

    calls = [c["argv"] for c in docker_calls(log)]
    assert calls == [
        ["info", "--format", "{{.ServerVersion}}"],
        ["build", "--platform", "linux/amd64", "-f", "worker/Dockerfile", "-t", "kinase-worker:t1", "."],
        ["tag", "kinase-worker:t1", f"{uri}:t1"],
        ["login", "--username", "AWS", "--password-stdin", registry],
        ["push", f"{uri}:t1"],
    ]  # one tag per build, never `latest`: the repository's tags are immutable
    password = ecr_password()
    login = docker_calls(log)[3]
    assert login["stdin"] == password
    assert all(password not in " ".join(c) for c in calls)
    assert password not in proc.stdout and password not in proc.stderr

    assert f"digest {digest}" in proc.stdout
    pinned = newest_task_definition(deployed_stack)
    worker = next(c for c in pinned["containerDefinitions"] if c["name"] == deployed_stack["ContainerName"])
    assert worker["image"] == f"{uri}@{digest}"
    assert pinned["taskDefinitionArn"] in proc.stdout


def test_one_push_pins_the_worker_and_the_fleet_family_to_the_digest_the_push_created(deployed_stack, docker):
    """The fake docker's push creates the manifest in the local ECR, as a registry does; both families that run
    the worker image get a revision on its digest (the fleet's was left on a tag never pushed before)."""
    env, _ = docker
    uri = deployed_stack["RepositoryUri"]
    data = json.loads(kinase("push-image", "--local", "--tag", "both-families", "--json", env=env, check=True).stdout)["data"]
    found = local().client("ecr").describe_images(repositoryName=deployed_stack["RepositoryName"], imageIds=[{"imageTag": "both-families"}])
    assert found["imageDetails"][0]["imageDigest"] == data["digest"]
    ecs = local().client("ecs")
    families = [deployed_stack["TaskDefinitionFamily"], naming.fleet_family("dev")]
    for family in families:
        newest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        assert [c["image"] for c in newest["containerDefinitions"]] == [f"{uri}@{data['digest']}"], family
    assert [arn.rsplit("/", 1)[1].rsplit(":", 1)[0] for arn in data["task_definition_arns"]] == families
    assert data["task_definition_arn"] == data["task_definition_arns"][0]
    assert data["fleet"]["rolled"] is False  # no fleet runs in this environment


def test_a_push_rolls_the_running_fleet_service_to_the_new_revision(deployed_stack, docker):
    """The AWS path against moto's ECS: with the fleet service up, the push ends in UpdateService to the
    fleet family's newest revision, the one pinned to the pushed digest (fleet.roll: ECS rolls it 100/200)."""
    env, _ = docker
    ecs, cluster, service = local().client("ecs"), deployed_stack["ClusterName"], deployed_stack["FleetServiceName"]
    assert kinase("fleet", "up", "--workers", "1", env=aws_env()).returncode == 0
    try:
        proc = kinase("push-image", "--tag", "rolls-fleet", "--json", env={**aws_env(), **env})
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)["data"]
        fleet = ecs.describe_task_definition(taskDefinition=naming.fleet_family("dev"))["taskDefinition"]
        assert fleet["containerDefinitions"][0]["image"] == data["image"]
        (described,) = ecs.describe_services(cluster=cluster, services=[service])["services"]
        assert described["taskDefinition"] == fleet["taskDefinitionArn"] == data["fleet"]["task_definition"]
        assert data["fleet"]["rolled"] and data["fleet"]["service"] == service
    finally:
        kinase("fleet", "down", env=aws_env())


def test_source_tree_registers_the_local_workers_sources_as_the_image(deployed_stack, docker):
    """The local stack's push without Docker: a manifest whose one layer is the hash of the worker's sources."""
    from kinase_cli.workflows.images import source_digest

    env, log = docker
    first = json.loads(kinase("push-image", "--local", "--source-tree", "--json", env=env, check=True).stdout)["data"]
    assert first["tags"] == [f"source-{source_digest()[:12]}"]
    assert docker_calls(log) == []  # no docker at all
    ecr = local().client("ecr")
    (image,) = ecr.batch_get_image(repositoryName=deployed_stack["RepositoryName"], imageIds=[{"imageTag": first["tags"][0]}])["images"]
    assert [layer["digest"] for layer in json.loads(image["imageManifest"])["layers"]] == [f"sha256:{source_digest()}"]
    assert image["imageId"]["imageDigest"] == first["digest"]
    worker = newest_task_definition(deployed_stack)
    assert worker["containerDefinitions"][0]["image"] == first["image"] == f"{deployed_stack['RepositoryUri']}@{first['digest']}"
    again = json.loads(kinase("push-image", "--local", "--source-tree", "--json", check=True).stdout)["data"]
    assert (again["tags"], again["digest"]) == (first["tags"], first["digest"])  # the same tree is the same image


def test_source_tree_is_for_the_local_stack_only(deployed_stack):
    line = one_error_line(kinase("push-image", "--source-tree", env=aws_env()))
    assert "--source-tree registers the source tree the local stack's workers run" in line and "drop --source-tree" in line
    assert "--source-tree names its image after the sources" in one_error_line(
        kinase("push-image", "--local", "--source-tree", "--tag", "x")
    )


def test_default_tag_is_the_git_commit_and_json_output(deployed_stack, docker):
    import json

    env, log = docker
    digest = put_image(deployed_stack, "json", "json-output")
    proc = kinase("push-image", "--local", "--json", env={**env, "FAKE_DOCKER_DIGEST": digest})
    assert proc.returncode == 0, proc.stderr
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    data = json.loads(proc.stdout)["data"]
    (tag,) = data["tags"]
    assert re.fullmatch(rf"{sha}(-dirty)?-\d{{8}}T\d{{6}}Z", tag), tag
    assert data["digest"] == digest
    assert data["image"] == f"{deployed_stack['RepositoryUri']}@{digest}"
    assert data["task_definition_arn"] == newest_task_definition(deployed_stack)["taskDefinitionArn"]
    assert ["push", f"{deployed_stack['RepositoryUri']}:{data['tags'][0]}"] in [c["argv"] for c in docker_calls(log)]


def test_an_existing_tag_is_refused_in_one_line(deployed_stack, docker):
    env, _ = docker
    proc = kinase(
        "push-image", "--local", "--tag", "t1", env={**env, "FAKE_DOCKER_FAIL": "immutable", "FAKE_DOCKER_DIGEST": "sha256:" + "0" * 64}
    )
    line = one_error_line(proc)
    assert "tag t1 already exists" in line and "immutable" in line and "leave --tag out" in line


def test_no_build_needs_the_tag_it_built(deployed_stack, docker):
    env, log = docker
    assert "--no-build needs --tag" in one_error_line(kinase("push-image", "--local", "--no-build", env=env))
    assert [c["argv"][0] for c in docker_calls(log)] == ["info"]


def test_no_build_pushes_an_existing_local_image(deployed_stack, docker):
    env, log = docker
    digest = put_image(deployed_stack, "prebuilt", "no-build")
    proc = kinase("push-image", "--local", "--no-build", "--tag", "prebuilt", env={**env, "FAKE_DOCKER_DIGEST": digest})
    assert proc.returncode == 0, proc.stderr
    commands = [c["argv"][0] for c in docker_calls(log)]
    assert "build" not in commands
    assert ["image", "inspect", "kinase-worker:prebuilt"] in [c["argv"] for c in docker_calls(log)]


@pytest.mark.parametrize(
    "step, expected",
    [
        ("daemon", "the Docker daemon is not reachable"),
        ("build", "docker build failed (exit 1): ERROR: build went wrong"),
        ("login", "docker login failed (exit 1)"),
        ("push", "docker push failed (exit 1): ERROR: push went wrong"),
        ("inspect", "there is no local image kinase-worker:t2"),
    ],
)
def test_each_failing_step_is_one_clear_line(deployed_stack, docker, step, expected):
    env, log = docker
    args = ["push-image", "--local", "--tag", "t2"] + (["--no-build"] if step == "inspect" else [])
    proc = kinase(*args, env={**env, "FAKE_DOCKER_FAIL": step, "FAKE_DOCKER_DIGEST": "sha256:" + "0" * 64})
    line = one_error_line(proc)
    assert expected in line
    password = ecr_password()
    assert password not in proc.stderr and password not in proc.stdout
    commands = [c["argv"][0] for c in docker_calls(log)]
    assert commands[-1] == {"daemon": "info", "inspect": "image"}.get(step, step)  # nothing runs after a failed step


def test_a_digest_the_registry_does_not_hold_is_an_error(deployed_stack, docker):
    env, _ = docker
    before = newest_task_definition(deployed_stack)["revision"]
    proc = kinase("push-image", "--local", "--tag", "t3", env={**env, "FAKE_DOCKER_DIGEST": "sha256:" + "d" * 64})
    assert "does not hold it" in one_error_line(proc)
    assert newest_task_definition(deployed_stack)["revision"] == before


def test_docker_missing(deployed_stack):
    proc = kinase("push-image", "--local", "--tag", "t4", env={"PATH": path_without_docker()})
    line = one_error_line(proc)
    assert "`docker` was not found" in line and "install Docker" in line


def test_stack_missing(local_stack, docker):
    env, _ = docker
    proc = kinase("push-image", "--local", "--env", "nosuch", "--tag", "t5", env=env)
    line = one_error_line(proc)
    assert "kinase-nosuch-" in line and "kinase deploy --local --env nosuch" in line


def _real_docker_daemon() -> bool:
    import shutil

    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _real_docker_daemon(), reason="real-daemon variant: no Docker daemon is reachable here")
def test_real_docker_builds_and_tags_then_the_push_to_the_local_registry_fails_cleanly(deployed_stack):
    """A real engine builds worker/Dockerfile and tags it; moto's registry host is not a real registry,
    so the push fails, and it must fail as one line."""
    uri = deployed_stack["RepositoryUri"]
    proc = kinase("push-image", "--local", "--tag", "real-daemon", timeout=3600)
    assert subprocess.run(["docker", "image", "inspect", f"{uri}:real-daemon"], capture_output=True).returncode == 0
    line = one_error_line(proc)
    assert "docker login failed" in line or "docker push failed" in line


def test_gpu_variant_needs_gpu_workers(deployed_stack, docker):
    env, log = docker
    line = one_error_line(kinase("push-image", "--local", "--variant", "gpu", env=env))
    assert "no GPU workers" in line and "kinase deploy --gpu --local" in line
    assert "build" not in [c["argv"][0] for c in docker_calls(log)]


def test_gpu_variant_builds_the_cuda_image_and_pins_the_gpu_task_definition(local_stack, docker):
    """`deploy --gpu` on the local stack (moto creates the capacity provider's resources as CloudFormation
    asks), then `push-image --variant gpu`: the build uses VARIANT=pt and the GPU family gets the digest."""
    env, log = docker
    name = "h6gpu"
    values = json.loads(kinase("deploy", "--local", "--env", name, "--gpu", "--json", check=True, timeout=900).stdout)["data"]
    try:
        digest = put_image(values, "gpu-build", "gpu-variant")
        proc = kinase("push-image", "--local", "--env", name, "--variant", "gpu", "--json", env={**env, "FAKE_DOCKER_DIGEST": digest})
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)["data"]
        (tag,) = data["tags"]
        assert tag.endswith("-gpu") and data["variant"] == "gpu"
        (build,) = [c["argv"] for c in docker_calls(log) if c["argv"][0] == "build"]
        assert build[build.index("--build-arg") + 1] == "VARIANT=pt"
        pinned = local().client("ecs").describe_task_definition(taskDefinition=values["GpuTaskDefinitionFamily"])["taskDefinition"]
        assert pinned["containerDefinitions"][0]["image"] == f"{values['RepositoryUri']}@{digest}"
        assert data["task_definition_arn"] == pinned["taskDefinitionArn"]
        fleet = local().client("ecs").describe_task_definition(taskDefinition=naming.gpu_fleet_family(name))["taskDefinition"]
        assert fleet["containerDefinitions"][0]["image"] == f"{values['RepositoryUri']}@{digest}"  # the GPU fleet's family too
        assert data["task_definition_arns"] == [pinned["taskDefinitionArn"], fleet["taskDefinitionArn"]]

    finally:
        kinase("destroy", "--local", "--env", name, "--yes", timeout=900)


def test_run_task_gpu_needs_gpu_workers(deployed_stack):
    line = one_error_line(kinase("run-task", "--gpu", env=aws_env()))
    assert "no GPU workers" in line and "kinase deploy --gpu" in line


def test_run_task_gpu_places_the_task_on_the_gpu_capacity_provider():
    """RunTask's placement for --gpu: the stack's capacity provider by its fixed name, no Fargate launch type,
    no awsvpc configuration (bridge mode on an instance with a public address)."""
    from kinase_cli.aws.target import Target
    from kinase_cli.workflows.run_task import gpu_placement

    placement = gpu_placement(Target(env="prod"), {"GpuTaskDefinitionFamily": naming.gpu_family("prod")})
    assert placement == {"capacityProviderStrategy": [{"capacityProvider": naming.gpu_capacity_provider("prod"), "weight": 1, "base": 0}]}

"""Helpers for the push-image, run-task, logs and status tests.

`fake_docker` writes a recording `docker` program: each call appends its argv and (for `login
--password-stdin`) its stdin to a JSON-lines file and answers like the real CLI, failing on the step
named in FAKE_DOCKER_FAIL. Its `push` registers the image manifest in the local stack's ECR
(`register_pushed`), as a real push creates it, and reports that digest; FAKE_DOCKER_DIGEST makes it
report a given digest instead, without registering anything. There is no Docker engine here; the real-daemon variant of the push test
runs only where `docker info` succeeds.

`aws_env` is the environment that points the plain AWS code path (no --local) at the local stack's
moto server through the standard AWS_ENDPOINT_URL variables, so `run-task` calls moto's ECS RunTask
the way it calls Fargate, instead of starting a local worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path

from kinase_cli.aws.target import Target

FAKE_DOCKER = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    argv = sys.argv[1:]
    stdin = sys.stdin.read() if "--password-stdin" in argv else None
    with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
        log.write(json.dumps({{"argv": argv, "stdin": stdin}}) + "\\n")
    fail = os.environ.get("FAKE_DOCKER_FAIL", "")
    cmd = argv[0] if argv else ""
    if cmd == "image":
        cmd = "inspect"
    if cmd == "info" and fail == "daemon":
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", file=sys.stderr)
        sys.exit(1)
    if cmd == "push" and fail == "immutable":
        tag, repo = argv[1].rsplit(":", 1)[1], argv[1].rsplit(":", 1)[0].split("/", 1)[1]
        print(f"tag invalid: The image tag '{{tag}}' already exists in the '{{repo}}' repository and cannot be overwritten because the repository is immutable.", file=sys.stderr)
        sys.exit(1)
    if cmd == fail:
        if cmd == "login":
            # a hostile client that echoes what it was given: kinase must still not show it
            print(f"Error response from daemon: login attempt failed with password {{stdin}}", file=sys.stderr)
        else:
            print(f"ERROR: {{cmd}} went wrong", file=sys.stderr)
        sys.exit(1)
    if cmd == "info":
        print("27.3.1")
    elif cmd == "build":
        print("#1 [internal] load build definition from Dockerfile")
        print("#9 naming to docker.io/library/" + argv[argv.index("-t") + 1] + " done")
    elif cmd == "login":
        print("Login Succeeded")
    elif cmd == "push":
        ref = argv[1]
        # A push creates the image manifest in the registry; FAKE_DOCKER_DIGEST instead reports a digest without it.
        digest = os.environ.get("FAKE_DOCKER_DIGEST")
        if not digest:
            sys.path.insert(0, {support!r})
            from ops import register_pushed
            digest = register_pushed(ref)
        print(f"The push refers to repository [{{ref.rsplit(':', 1)[0]}}]")
        for layer in ("5f70bf18a086", "a3ed95caeb02", "0b1f26a5f1d3"):
            print(f"{{layer}}: Preparing")
        for layer in ("5f70bf18a086", "a3ed95caeb02"):
            print(f"{{layer}}: Pushed")
        print("0b1f26a5f1d3: Layer already exists")
        print(f"{{ref.rsplit(':', 1)[1]}}: digest: {{digest}} size: 1570")
    """
)


def fake_docker(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "docker"
    path.write_text(FAKE_DOCKER.format(python=sys.executable, support=str(Path(__file__).parent)))
    path.chmod(0o755)
    return path


def docker_calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def local() -> Target:
    return Target(local=True)


def aws_env() -> dict[str, str]:
    env = local().child_env()
    env.pop("KINASE_LOCAL", None)
    return env


MANIFEST = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1470, "digest": "sha256:" + "c" * 64},
    "layers": [],
}


def put_image(outputs: dict, tag: str, label: str) -> str:
    """Put an image manifest into the stack's ECR repository, as a registry push does; returns its digest.

    `label` names its one layer, so that different labels give different digests.
    """
    layer = {
        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "size": 1024,
        "digest": "sha256:" + hashlib.sha256(label.encode()).hexdigest(),
    }
    manifest = {**MANIFEST, "layers": [layer]}
    ecr = local().client("ecr")
    try:
        answer = ecr.put_image(repositoryName=outputs["RepositoryName"], imageManifest=json.dumps(manifest), imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        found = ecr.describe_images(repositoryName=outputs["RepositoryName"], imageIds=[{"imageTag": tag}])
        return found["imageDetails"][0]["imageDigest"]
    return answer["image"]["imageId"]["imageDigest"]


def register_pushed(ref: str) -> str:
    """What a registry does on `docker push REF` (REF = uri:tag): the manifest is put into the local stack's
    ECR repository under the tag, its one layer named after REF; returns the digest the push reports."""
    uri, tag = ref.rsplit(":", 1)
    return put_image({"RepositoryName": uri.split("/", 1)[1]}, tag, ref)


def remove_images(outputs: dict) -> None:
    ecr = local().client("ecr")
    ids = ecr.list_images(repositoryName=outputs["RepositoryName"])["imageIds"]
    if ids:
        ecr.batch_delete_image(repositoryName=outputs["RepositoryName"], imageIds=ids)


def newest_task_definition(outputs: dict) -> dict:
    return local().client("ecs").describe_task_definition(taskDefinition=outputs["TaskDefinitionFamily"])["taskDefinition"]


def path_without_docker() -> str:
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "docker").exists()]
    return os.pathsep.join(keep)


def drain(queue_url: str) -> list[dict]:
    """Receive and delete every message now on the queue (PurgeQueue allows one call a minute)."""
    sqs = local().client("sqs")
    bodies = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            return bodies
        bodies += [m["Body"] for m in batch]
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )

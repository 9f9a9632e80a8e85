"""The image each task definition runs: pinning a pushed image, and the local stack's stand-in for one.

`push-image` (and the demo) pin every family that runs the worker image just pushed: the one-off
worker's and the fleet's (their GPU twins for the CUDA image), so nothing is left on a tag that was
never pushed (the repository's tags are immutable; ECS would loop on CannotPullContainerError).

The local stack has no Docker registry and runs the workers from this source tree, so the image it
knows is a description of that tree: `register_source_tree` puts into the local ECR a manifest
whose one layer is the hash of the worker's sources, under the tag `source-<hash>`, the way a push
creates a manifest. `run-task --local` and `fleet up --local` then find the image of the revision
they start in the repository exactly as ECS would, and refuse otherwise.
"""

from __future__ import annotations

import hashlib
import json

from kinase_cli import paths
from kinase_cli.aws import taskdef
from kinase_cli.aws.outputs import StackOutputs
from kinase_cli.aws.target import Target
from kinase_cli.workflows import fleet

SOURCE_TAG_PREFIX = "source-"
# What the local workers run: the worker package and the image recipe (worker/Dockerfile).
SOURCE_GLOBS = ("worker/**/*.py", "worker/Dockerfile")
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def pin(target: Target, outputs: StackOutputs, image: str, variant: str) -> dict:
    """Register a revision of every family that runs the `variant` image, pinned to `image` (repository@digest),
    then move a running fleet onto its newest revision (fleet.roll: a rolling deployment, no gap);
    {pinned: the new revisions, fleet: what the roll did}."""
    pinned = taskdef.pin(target, outputs, image, variant)
    return {"pinned": pinned, "fleet": fleet.roll(target, outputs)}


def source_digest() -> str:
    """sha256 over the worker's source files (relative path and content), in a stable order."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in SOURCE_GLOBS for p in paths.PROJECT_ROOT.glob(pattern) if "__pycache__" not in p.parts})
    for path in files:
        digest.update(str(path.relative_to(paths.PROJECT_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def push_source_tree(target: Target, outputs: StackOutputs, variant: str = "cpu") -> dict:
    """The local stack's push (`push-image --local --source-tree`, the demo): register the source tree, pin
    the families, roll a running fleet; {tag, digest, pushed_at, pinned, fleet}."""
    registered = register_source_tree(target, outputs)
    return {**registered, **pin(target, outputs, f"{outputs['RepositoryUri']}@{registered['digest']}", variant)}


def register_source_tree(target: Target, outputs: StackOutputs) -> dict:
    """Put the source tree's manifest into the local stack's repository (`target` is local); {tag, digest, pushed_at}."""
    tree = source_digest()
    tag = SOURCE_TAG_PREFIX + tree[:12]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 0,
            "digest": "sha256:" + hashlib.sha256(f"kinase source tree {paths.PROJECT_ROOT}".encode()).hexdigest(),
        },
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 0, "digest": f"sha256:{tree}"}],
    }
    ecr, repository = target.client("ecr"), outputs["RepositoryName"]
    try:
        ecr.put_image(repositoryName=repository, imageManifest=json.dumps(manifest), imageManifestMediaType=MANIFEST_TYPE, imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        pass  # this tree was registered before: its tag names the same sources
    (image,) = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    return {"tag": tag, "digest": image["imageDigest"], "pushed_at": image.get("imagePushedAt")}

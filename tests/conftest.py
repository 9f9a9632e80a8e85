"""Fixtures for every area. Every test session gets its own KINASE_HOME, so a developer's state is never touched."""

from __future__ import annotations

import json
import os

import pytest

from support.cli import free_port, kinase
from support.worker_stack import Media


@pytest.fixture(scope="session", autouse=True)
def kinase_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("kinase-home")
    os.environ["KINASE_HOME"] = str(home)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] = "20"
    # pytest-xdist's workers set COLUMNS=80 and LINES=24 as if they had a terminal; `kinase` and cdk would
    # wrap their output to it. A test that wants a width passes one.
    for var in ("AWS_PROFILE", "KINASE_LOCAL", "KINASE_ENV", "COLUMNS", "LINES"):
        os.environ.pop(var, None)
    return home


@pytest.fixture(scope="session")
def local_stack(kinase_home):
    """`kinase local up` on free ports for the whole session; yields its state.json; always `local down`."""
    port, kvs_port = free_port(), free_port()
    try:
        kinase("local", "up", "--port", str(port), "--kvs-port", str(kvs_port), check=True, timeout=300)
        yield json.loads((kinase_home / "local" / "state.json").read_text())
    finally:
        kinase("local", "down", timeout=120)


@pytest.fixture(scope="session")
def deployed_stack(local_stack):
    """`kinase deploy --local` once per session, then the local stack's push (the source tree the local workers run
    registered as the image, as `run-task`/`fleet up` require); yields the outputs (ResultsQueueUrl, FramesBucketName, ...)."""
    kinase("deploy", "--local", check=True, timeout=600)
    kinase("push-image", "--local", "--source-tree", check=True)
    return json.loads(kinase("outputs", "--local", "--json", check=True).stdout)["data"]


@pytest.fixture(scope="session")
def media(local_stack):
    """The session's local stack (`kinase local up`): its moto server and its Kinesis Video endpoint."""
    return Media(local_stack["aws_endpoint"], local_stack["kinesis_video_endpoint"])


@pytest.fixture
def aws_env(media, monkeypatch):
    """Point boto3 in this process at the local stack (for in-process workers)."""
    for key, value in media.env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return media

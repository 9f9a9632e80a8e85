"""A local Kinesis Video endpoint for tests, and helpers to read media back through boto3.

`kvs_endpoint` runs `python -m kinase_cli.local.kvs_server` as `kinase local up` does, in its own
KINASE_HOME whose local/state.json points the CLI at it (`--local`), so these tests do not depend
on (or disturb) the shared local stack. Import the fixture into a test module to use it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from conftest import ROOT, free_port
from worker import mkv

MEDIA_IDLE_SECONDS = 2  # GetMedia responses end this long after the last fragment


@dataclass
class KvsEndpoint:
    url: str
    home: Path

    @property
    def env(self) -> dict[str, str]:
        """Environment for `kinase(...)`: this endpoint's KINASE_HOME."""
        return {"KINASE_HOME": str(self.home)}

    def session(self, secret: str = "testing"):
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key=secret, region_name="us-east-1")

    def control(self, secret: str = "testing"):
        return self.session(secret).client("kinesisvideo", endpoint_url=self.url)

    def media(self, stream: str):
        endpoint = self.control().get_data_endpoint(StreamName=stream, APIName="GET_MEDIA")["DataEndpoint"]
        return self.session().client("kinesis-video-media", endpoint_url=endpoint)

    def get_media(self, stream: str, **selector):
        return self.media(stream).get_media(StreamName=stream, StartSelector=selector)["Payload"]

    def fragments(self, stream: str, **selector) -> list[mkv.Fragment]:
        return list(mkv.iter_fragments(self.get_media(stream, **selector)))

    def create(self, stream: str, retention_hours: int = 1) -> None:
        self.control().create_stream(StreamName=stream, DataRetentionInHours=retention_hours)


@pytest.fixture(scope="module")
def kvs_endpoint(tmp_path_factory):
    home = tmp_path_factory.mktemp("kvs-home")
    port = free_port()
    log = open(home / "kvs_server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kinase_cli.local.kvs_server", "--host", "localhost", "--port", str(port),
         "--media-idle-seconds", str(MEDIA_IDLE_SECONDS)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((home / "kvs_server.log").read_text())
            time.sleep(0.05)
    (home / "local").mkdir(exist_ok=True)
    (home / "local" / "state.json").write_text(json.dumps({
        "aws_endpoint": f"http://localhost:{free_port()}",  # nothing listens: these tests never need moto
        "kinesis_video_endpoint": url,
    }))
    yield KvsEndpoint(url=url, home=home)
    proc.terminate()
    proc.wait(10)
    log.close()


def decode(fragments: list[mkv.Fragment]) -> list[tuple[float, object]]:
    """(frame time in epoch seconds, frame) of every frame, fragment by fragment."""
    import av

    frames = []
    for fragment in fragments:
        with av.open(io.BytesIO(fragment.data)) as container:
            for frame in container.decode(video=0):
                when = fragment.producer_timestamp + (frame.pts - fragment.cluster_timecode) / 1000
                frames.append((when, frame))
    return frames

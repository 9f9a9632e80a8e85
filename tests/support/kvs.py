"""A local Kinesis Video endpoint for tests, and helpers to read media back through boto3.

`kvs_endpoint` runs `python -m kinase_cli.local.kvs_server` as `kinase local up` does (the
service's behaviour, idle GetMedia connections held open included), in its own KINASE_HOME whose
local/state.json points the CLI at it (`--local`), so these tests do not depend on (or disturb) the
shared local stack. `endpoint(...)` starts another one with shortened limits for a test.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import urllib3
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from infra import naming
from support.cli import ROOT, free_port
from support.poll import until
from worker.sources import mkv

READ_IDLE_SECONDS = 2.0  # `fragments` stops reading after this long without a byte (the service never ends the response)


@dataclass
class KvsEndpoint:
    url: str
    home: Path
    log: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for `kinase(...)`: this endpoint's KINASE_HOME."""
        return {"KINASE_HOME": str(self.home)}

    def session(self, secret: str = "testing"):
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key=secret, region_name="us-east-1")

    def control(self, secret: str = "testing"):
        return self.session(secret).client("kinesisvideo", endpoint_url=self.url)

    def media(self, stream: str, read_timeout: float = 60):
        endpoint = self.control().get_data_endpoint(StreamName=stream, APIName="GET_MEDIA")["DataEndpoint"]
        config = Config(read_timeout=read_timeout, retries={"max_attempts": 1})
        return self.session().client("kinesis-video-media", endpoint_url=endpoint, config=config)

    def get_media(self, stream: str, read_timeout: float = 60, **selector):
        return self.media(stream, read_timeout).get_media(StreamName=stream, StartSelector=selector)["Payload"]

    def fragments(self, stream: str, **selector) -> list[mkv.Fragment]:
        """Every fragment GetMedia sends until it has sent nothing for READ_IDLE_SECONDS."""
        payload = self.get_media(stream, read_timeout=READ_IDLE_SECONDS, **selector)
        got: list[mkv.Fragment] = []
        try:
            got.extend(mkv.iter_fragments(payload))
        except (urllib3.exceptions.ReadTimeoutError, ReadTimeoutError, TimeoutError, urllib3.exceptions.ProtocolError):
            pass  # idle (or, behind --idle-reset-seconds, reset while idle)
        finally:
            payload.close()
        return got

    def create(self, stream: str, retention_hours: int = 1, env: str | None = None) -> None:
        """A stream; with `env`, one of that environment's (tagged kinase:env=ENV, as `kinase stream create` does)."""
        tags = {"Tags": {naming.ENV_TAG: env}} if env else {}
        self.control().create_stream(StreamName=stream, DataRetentionInHours=retention_hours, **tags)


@contextlib.contextmanager
def endpoint(home: Path, *flags: str) -> Iterator[KvsEndpoint]:
    """A local Kinesis Video endpoint process (`kvs_server` with `flags`) and a KINASE_HOME pointing at it."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / "kvs_server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kinase_cli.local.kvs_server", "--host", "localhost", "--port", str(port), *flags],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://localhost:{port}"

    def healthy() -> bool:
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return True
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()) from None
            return False

    try:
        until(healthy, lambda: f"{url}/health answered:\n{log_path.read_text()}", timeout=60, every=0.05)
        (home / "local").mkdir(exist_ok=True)
        (home / "local" / "state.json").write_text(
            json.dumps(
                {
                    "aws_endpoint": f"http://localhost:{free_port()}",  # nothing listens: these tests never need moto
                    "kinesis_video_endpoint": url,
                }
            )
        )
        yield KvsEndpoint(url=url, home=home, log=log_path)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def video_positions(kvs: KvsEndpoint, stream: str) -> list[tuple[str, int]]:
    """The truth a worker is checked against: every video frame the stream holds, as its position (fragment
    number, offset among the fragment's video frames), decoded with PyAV from GetMedia from EARLIEST on and
    across ended sessions with the continuation token."""
    import av

    positions: list[tuple[str, int]] = []
    selector = {"StartSelectorType": "EARLIEST"}
    while fragments := kvs.fragments(stream, **selector):
        for fragment in fragments:
            with av.open(io.BytesIO(fragment.data)) as container:
                frames = sum(1 for frame in container.decode(video=0) if frame.pts is not None)
            positions += [(fragment.fragment_number, offset) for offset in range(frames)]
        selector = {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": fragments[-1].continuation_token}
    return positions


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

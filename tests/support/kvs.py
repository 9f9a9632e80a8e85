"""A local Kinesis Video endpoint for tests, and helpers to read media back through boto3.

`kvs_endpoint` runs `python -m kinase_cli.local.kvs_server` as `kinase local up` does, in its own
KINASE_HOME whose local/state.json points the CLI at it (`--local`), so these tests do not depend
on (or disturb) the shared local stack. Import the fixture into a test module to use it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import boto3

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

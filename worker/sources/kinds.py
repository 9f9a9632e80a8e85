"""The kinds of source a KINASE_SOURCE URI names, and what each can do: the one place that classifies a source.

Code asks a kind for its capabilities (live, resumable, local, its default stream name, whether a
URI of it is valid) instead of comparing kind names, as Ultralytics' source types carry flags. A
leaf: settings (which classifies the source it parses) and the sources both import it.
Adding a source is one module with an opener plus one row in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

KVS_SCHEME = "kvs"  # KINASE_SOURCE=kvs://STREAM reads a Kinesis Video stream


def kvs_source(stream: str) -> str:
    return f"{KVS_SCHEME}://{stream}"


def kvs_stream(uri: str) -> str:
    """The stream a `kvs://STREAM` URI names."""
    return uri[len(KVS_SCHEME) + 3 :]


def _path_stem(uri: str) -> str:
    return Path(urlparse(uri).path).stem or "stream"


def _kvs_invalid(uri: str) -> str | None:
    return None if kvs_stream(uri) else f" names no stream ({KVS_SCHEME}://STREAM)"


def _s3_invalid(uri: str) -> str | None:
    parsed = urlparse(uri)
    return None if parsed.netloc and parsed.path.strip("/") else " is not s3://bucket/key"


def _file_invalid(uri: str) -> str | None:
    return None if Path(uri).is_file() else ": no such file"


def _valid(_uri: str) -> str | None:
    return None


@dataclass(frozen=True)
class Kind:
    name: str  # the contract's source.type
    opener: str  # "module:function" (settings, session, s3, sampler, metrics, stop, resume, incarnation) -> frames
    live: bool  # live frames may be dropped when inference falls behind; recorded ones are all processed
    default_stream: Callable[[str], str] = _path_stem  # the stream name when KINASE_STREAM_NAME is not set
    invalid: Callable[[str], str | None] = _valid  # why a URI of this kind cannot be read, as the end of an error line (None: it can)
    resumable: bool = False  # a stream incarnation with positions: checkpoints, resume (Kinesis Video)
    local: bool = False  # a file on this machine, readable again (int8 calibration may sample its frames)


KINDS = {
    KVS_SCHEME: Kind(KVS_SCHEME, "worker.sources.kvs:open_kvs", live=True, default_stream=kvs_stream, invalid=_kvs_invalid, resumable=True),
    "s3": Kind("s3", "worker.sources.video:open_s3", live=False, invalid=_s3_invalid),
    "rtsp": Kind("url", "worker.sources.video:open_video", live=True),
    "rtmp": Kind("url", "worker.sources.video:open_video", live=True),
    "http": Kind("url", "worker.sources.video:open_video", live=False),
    "https": Kind("url", "worker.sources.video:open_video", live=False),
}
FILE = Kind("file", "worker.sources.video:open_video", live=False, invalid=_file_invalid, local=True)


def classify(uri: str) -> Kind:
    """The kind of source a URI names; anything without a known scheme is a local file."""
    return KINDS.get(urlparse(uri).scheme.lower(), FILE)

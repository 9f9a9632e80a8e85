"""Where frames come from: Kinesis Video (`kvs://`), a file or URL (OpenCV), or an S3 object.

`KINDS` is the one place that classifies a source URI: its scheme names the kind of source, the
module and class that read it, and whether it is live (live frames may be dropped when inference
falls behind; recorded ones are all processed). Adding a source is one module plus one row here.
This package imports no codec or AWS library until a source is opened.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from worker.settings import KVS_SCHEME
from worker.sources.errors import SourceError

if TYPE_CHECKING:
    from worker.metrics import Metrics
    from worker.settings import Settings

__all__ = ["KINDS", "SourceError", "classify", "open_source"]


@dataclass(frozen=True)
class Kind:
    name: str  # the contract's source.type
    reader: str  # "module:Class"
    live: bool


KINDS = {
    KVS_SCHEME: Kind(KVS_SCHEME, "worker.sources.kvs:KvsSource", live=True),
    "s3": Kind("s3", "worker.sources.video:VideoSource", live=False),
    "rtsp": Kind("url", "worker.sources.video:VideoSource", live=True),
    "rtmp": Kind("url", "worker.sources.video:VideoSource", live=True),
    "http": Kind("url", "worker.sources.video:VideoSource", live=False),
    "https": Kind("url", "worker.sources.video:VideoSource", live=False),
}
FILE = Kind("file", "worker.sources.video:VideoSource", live=False)


def classify(uri: str) -> Kind:
    """The kind of source a URI names; anything without a known scheme is a local file."""
    return KINDS.get(urlparse(uri).scheme.lower(), FILE)


def _reader(kind: Kind):
    module, _, name = kind.reader.partition(":")
    return getattr(importlib.import_module(module), name)


def open_source(
    settings: Settings, session, s3, metrics: Metrics, stop: threading.Event, resume: dict | None = None, incarnation: str | None = None
):
    """An iterable of Frame (and, for Kinesis Video, FragmentEnd) with a `close()`."""
    from worker.sampling import Sampler

    sampler = Sampler(settings.every, settings.fps)
    kind = classify(settings.source)
    reader = _reader(kind)
    if kind.name == KVS_SCHEME:
        return reader(
            session,
            settings.kvs_stream,
            start=settings.start,
            resume=resume,
            sampler=sampler,
            metrics=metrics,
            stop=stop,
            idle_exit=settings.idle_exit,
            max_lag=settings.max_lag,
            read_timeout=settings.read_timeout,
            give_up_after=settings.give_up_after,
            incarnation=incarnation,
        )
    if kind.name == "s3":
        from worker.sources.video import download

        return reader(settings.source, "s3", sampler, metrics, stop, path=download(s3, settings.source))
    return reader(settings.source, kind.name, sampler, metrics, stop, live=kind.live)

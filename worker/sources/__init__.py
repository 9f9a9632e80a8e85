"""Where frames come from: Kinesis Video (`kvs://`), a file or URL (OpenCV), or an S3 object."""

from __future__ import annotations

import threading

from worker.metrics import Metrics
from worker.sampling import Sampler
from worker.settings import Settings
from worker.sources.video import SourceError, VideoSource, download

__all__ = ["SourceError", "open_source"]


def open_source(settings: Settings, session, s3, metrics: Metrics, stop: threading.Event, resume: dict | None = None):
    """An iterable of Frame (and, for Kinesis Video, FragmentEnd) with a `close()`."""
    sampler = Sampler(settings.every, settings.fps)
    if settings.source_type == "kvs":
        from worker.sources.kvs import KvsSource

        return KvsSource(
            session,
            settings.kvs_stream,
            start=settings.start,
            resume=resume,
            sampler=sampler,
            metrics=metrics,
            stop=stop,
            idle_exit=settings.idle_exit,
        )
    if settings.source_type == "s3":
        return VideoSource(settings.source, "s3", sampler, metrics, stop, path=download(s3, settings.source))
    return VideoSource(settings.source, settings.source_type, sampler, metrics, stop, live=settings.live)

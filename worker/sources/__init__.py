"""Where frames come from: Kinesis Video (`kvs://`), a file or URL (OpenCV), or an S3 object.

Each kind of source, with what it can do and the function that opens it, is a row of `KINDS`
(worker/sources/kinds.py). Reading (`read`) and sampling (`sample`, worker/sources/sampling.py) are
the first two stages of the per-frame path and run here, on the reader thread: sampling before
decoding lets a source skip frames nobody will infer. This package imports no codec or AWS library
until a source is opened.
"""

from __future__ import annotations

import pkgutil
import threading
from typing import TYPE_CHECKING

from worker.sources.errors import SourceError
from worker.sources.kinds import KINDS, classify
from worker.sources.sampling import Sampler

if TYPE_CHECKING:
    from worker.metrics import Metrics
    from worker.settings import Settings

__all__ = ["KINDS", "SourceError", "classify", "open_source"]


def open_source(
    settings: Settings, session, s3, metrics: Metrics, stop: threading.Event, resume: dict | None = None, incarnation: str | None = None
):
    """An iterable of Frame (and, for Kinesis Video, FragmentEnd) with a `close()`."""
    opener = pkgutil.resolve_name(classify(settings.source).opener)
    return opener(settings, session, s3, Sampler(settings.every, settings.fps), metrics, stop, resume, incarnation)

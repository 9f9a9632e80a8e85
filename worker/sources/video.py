"""Files, URLs and S3 objects, read with OpenCV.

Frames that sampling skips are only grabbed, not retrieved: the codec still decodes them (inter
frames depend on them) but the colour conversion and copy are saved.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import cv2

from worker.frames import Frame
from worker.metrics import Metrics
from worker.sources.errors import SourceError
from worker.sources.kinds import classify
from worker.sources.sampling import Sampler

log = logging.getLogger("kinase.worker.source")


class VideoSource:
    def __init__(
        self, uri: str, kind: str, sampler: Sampler, metrics: Metrics, stop: threading.Event, path: str | None = None, live: bool = False
    ):
        self.uri = uri
        self.live = live
        self.kind = kind
        self.path = path or uri
        self.temporary = path is not None
        self.sampler = sampler
        self.metrics = metrics
        self.stop = stop

    def __iter__(self) -> Iterator[Frame]:
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise SourceError(f"cannot open {self.uri} as video")
        try:
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            number = 0
            began = time.time()
            while not self.stop.is_set():
                if not cap.grab():
                    break
                self.metrics.count("FramesRead")
                media_time = number / fps if fps > 0 else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                if not self.sampler.keep(media_time):
                    self.metrics.count("FramesSampledOut")
                else:
                    ok, image = cap.retrieve()
                    if ok and image is not None:
                        source = {"type": self.kind, "uri": self.uri, "frame_number": number}
                        yield Frame(
                            image=image,
                            source=source,
                            frame_index=number,
                            frame_time=time.time(),
                            read_at=time.monotonic(),
                            live=self.live,
                            media_time=None if self.live else began + media_time,
                        )
                    else:
                        self.metrics.count("CorruptMedia")
                        self.metrics.count("FramesCorrupt")
                        log.warning("frame %d of %s could not be decoded, skipped", number, self.uri)
                number += 1
            if number == 0:
                raise SourceError(f"{self.uri} has no readable video frames")
        finally:
            cap.release()

    def close(self) -> None:
        """The reading loop checks the stop event between frames; only a downloaded copy needs removing."""
        if self.temporary:
            Path(self.path).unlink(missing_ok=True)


def download(s3, uri: str) -> str:
    """Fetch s3://bucket/key into a temporary file (same suffix, so the demuxer can guess the format)."""
    from worker.aws import FatalError, retry

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    fd, path = tempfile.mkstemp(prefix="kinase-source-", suffix=Path(key).suffix)
    os.close(fd)
    try:
        retry(lambda: s3.download_file(bucket, key, path), what=f"download {uri}", give_up_after=120)
    except FatalError as exc:
        os.unlink(path)
        raise SourceError(str(exc)) from None
    log.info("downloaded %s (%d bytes)", uri, os.path.getsize(path))
    return path


def open_video(
    settings, session, s3, sampler: Sampler, metrics: Metrics, stop: threading.Event, resume=None, incarnation=None
) -> VideoSource:
    """A file or URL (worker/sources/kinds.py: its opener)."""
    kind = classify(settings.source)
    return VideoSource(settings.source, kind.name, sampler, metrics, stop, live=kind.live)


def open_s3(settings, session, s3, sampler: Sampler, metrics: Metrics, stop: threading.Event, resume=None, incarnation=None) -> VideoSource:
    """An S3 object, downloaded first (worker/sources/kinds.py: its opener)."""
    return VideoSource(settings.source, classify(settings.source).name, sampler, metrics, stop, path=download(s3, settings.source))

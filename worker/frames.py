"""What sources hand to the pipeline: decoded frames, and the end of each Kinesis Video fragment.

A fragment end is a separate item in the same ordered stream, so the pipeline knows when every
frame of a fragment has been seen and can checkpoint once they are all delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    image: np.ndarray  # BGR
    source: dict  # the contract's `source` object: type, uri, and the frame's position in it
    frame_index: int  # running count of frames read from the source in this run, sampled or not
    frame_time: float  # epoch seconds: producer time for Kinesis Video, wall clock of reading otherwise
    read_at: float  # time.monotonic() when the source produced it
    live: bool = False  # may be dropped when inference falls behind (see worker.pipeline.FrameQueue)
    fragment: str | None = None  # Kinesis Video fragment number
    fragment_time: float | None = None  # the fragment's producer timestamp
    server_time: float | None = None
    millis_behind_now: int | None = None


@dataclass
class FragmentEnd:
    """Every frame of this fragment has been read (or skipped); `checkpoint` is where to resume after it."""

    fragment: str
    checkpoint: dict = field(default_factory=dict)
    frames: int = 0
    failed: bool = False

"""What sources hand to the pipeline: decoded frames, and the end of each Kinesis Video fragment.

A fragment end is a separate item in the same ordered stream, so the pipeline knows when every
frame of a fragment has been seen and can checkpoint once they are all delivered.

A frame's identity is its position in the source, never its timestamp (cameras' clocks jump, two
uploads overlap): for Kinesis Video the stream incarnation (ARN, which ends in the creation time),
the fragment number and the frame's offset inside the fragment; for files the source URI and the
frame number. `Watermark` is the position up to which frames are already handled, so a frame read
again after a reconnect or a restart is recognised by where it is, not by when it was shot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    image: np.ndarray  # BGR
    source: dict  # the contract's `source` object: type, uri, and the frame's position in it
    frame_index: int  # running count of frames read from the source in this run, sampled or not
    frame_time: float  # epoch seconds: producer time for Kinesis Video, wall clock of reading otherwise (data, not identity)
    read_at: float  # time.monotonic() when the source produced it
    live: bool = False  # may be dropped when inference falls behind (see worker.pipeline.FrameQueue)
    fragment: str | None = None  # Kinesis Video fragment number
    fragment_time: float | None = None  # the fragment's producer timestamp
    server_time: float | None = None
    millis_behind_now: int | None = None
    offset: int | None = None  # Kinesis Video: the frame's position inside its fragment (0 = the key frame)
    incarnation: str | None = None  # Kinesis Video: the stream ARN (its last component is the creation time in ms)
    media_time: float | None = None  # a recorded file's frame: when reading began plus its position in the file

    @property
    def clock(self) -> float:
        """The frame's time on the media clock, what tracking and the rules measure time by (a track's lost time,
        a line's far side held, a dwell): producer time for Kinesis Video and live sources, and for a recorded file
        its position in the file (from when reading began), never how fast the worker happens to read it."""
        return self.frame_time if self.media_time is None else self.media_time


@dataclass
class FragmentEnd:
    """Every frame of this fragment has been read (or skipped); `checkpoint` is where to resume after it."""

    fragment: str
    checkpoint: dict = field(default_factory=dict)
    frames: int = 0
    failed: bool = False


def fragment_order(fragment: str) -> int:
    """Kinesis Video fragment numbers are decimal strings that increase along one stream incarnation."""
    return int(fragment)


@dataclass
class Watermark:
    """Positions of one stream incarnation already handled: every fragment before `fragment`, and in
    `fragment` itself the frames before `next_offset` (all of them when `next_offset` is None)."""

    fragment: str | None = None
    next_offset: int | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: dict | None) -> Watermark:
        if not checkpoint or not checkpoint.get("fragment_number"):
            return cls()
        return cls(checkpoint["fragment_number"], checkpoint.get("next_offset"))

    def covers(self, fragment: str, offset: int) -> bool:
        """Whether the frame at this position was handled before (a re-read to deduplicate)."""
        if self.fragment is None:
            return False
        mine, theirs = fragment_order(self.fragment), fragment_order(fragment)
        if theirs != mine:
            return theirs < mine
        return self.next_offset is None or offset < self.next_offset

    def fragment_done(self, fragment: str) -> None:
        if self.fragment is None or fragment_order(fragment) >= fragment_order(self.fragment):
            self.fragment, self.next_offset = fragment, None

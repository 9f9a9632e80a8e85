"""The `track` stage: the stream's tracker (worker/events/tracking.py) gives each detection of a confirmed track its `track_id`.

Its state (live tracks and the id counter) is in the checkpoint, so a restart or a lease hand-over
continues the stream's ids and replays the frames after the checkpoint to the same ids.
"""

from __future__ import annotations

from worker.events.tracking import StreamTracker
from worker.stages import Context, Stage, Work


class Track(Stage):
    name = "track"

    def __init__(self, tracker: StreamTracker):
        self.tracker = tracker

    @classmethod
    def from_context(cls, ctx: Context) -> Track:
        return cls(StreamTracker(lost_s=ctx.settings.track_lost_s))

    def __call__(self, work: Work) -> None:
        work.detections = self.tracker.update(work.detections, work.frame.clock)

    def snapshot(self) -> dict:
        return self.tracker.snapshot()

    def restore(self, state: dict) -> None:
        self.tracker.restore(state)

"""A stage for tests of the per-frame stages (worker/stages): it numbers detections as a tracker would."""

from __future__ import annotations

from worker.stages import Context, Stage, Work


class Numbering(Stage):
    """Gives each detection the next number as `track_id`, attaches how many it numbered, keeps its counter in the
    checkpoint, and records what it was told about the frames that never reached it; `seen` is shared by the test."""

    name = "numbering"
    seen: list[tuple[int, int, float | None]] = []

    def __init__(self):
        self.next = 1

    @classmethod
    def from_context(cls, ctx: Context) -> Numbering:
        return cls()

    def __call__(self, work: Work) -> None:
        self.seen.append((work.frame.frame_index, work.skipped, work.gap_s))
        work.detections = [{**d, "track_id": self.next + i} for i, d in enumerate(work.detections)]
        self.next += len(work.detections)
        work.extra["numbered"] = len(work.detections)

    def snapshot(self) -> dict:
        return {"next": self.next}

    def restore(self, state: dict) -> None:
        self.next = state["next"]

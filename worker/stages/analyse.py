"""The `analyse` stage: the stream's lines, zones and first sightings (worker/events/analysis.py) turn tracked detections into events.

The rules come from the rules in force (worker/events/rules_in_force.py), taken again whenever their
version moves, so `kinase rules apply` reaches a running worker without a restart; counts of lines
and zones that keep their names go on. What delivery gets, in `work.extra`:
- `events`: this frame's `kinase.event/1` events (published by worker/sinks/sns_events.py; the
  frame's JPEG, their snapshot, is then uploaded whatever KINASE_UPLOAD says),
- `counts`: the stream's running counts after this frame (the frame message's `counts`),
- `rules`: the stream's rules, drawn on the annotated frame.
Nothing is added while the stream has no rules: its frames and messages stay as they were.
The analyser's state (counts, tracks' sides, zone stays, cooldowns) is in the checkpoint.
"""

from __future__ import annotations

import logging

from worker import contract, layout
from worker.events.analysis import FrameInfo, StreamAnalyser
from worker.rules import NO_RULES
from worker.stages import Context, Stage, Work

log = logging.getLogger("kinase.worker.events")


class Analyse(Stage):
    name = "analyse"

    def __init__(self, stream_name: str, rules_in_force, metrics, *, track_lost_s: float):
        self.stream_name, self.rules_in_force, self.metrics = stream_name, rules_in_force, metrics
        self.version = 0
        self.rules = NO_RULES
        self.active = False  # whether the rules have anything to analyse frames for
        self.analyser = StreamAnalyser(NO_RULES, stream_name, track_lost_s=track_lost_s)
        self._take_rules()

    @classmethod
    def from_context(cls, ctx: Context) -> Analyse:
        return cls(ctx.settings.stream_name, ctx.rules, ctx.metrics, track_lost_s=ctx.settings.track_lost_s)

    def _take_rules(self) -> None:
        if self.rules_in_force is None or self.rules_in_force.version == self.version:
            return
        self.version = self.rules_in_force.version
        self.rules = self.rules_in_force.rules_for(self.stream_name)
        self.analyser.set_rules(self.rules)
        self.active = bool(self.rules.lines or self.rules.zones or self.rules.appeared)
        log.info(
            "stream %s: rules version %d (%d lines, %d zones, %d alerts)",
            self.stream_name,
            self.version,
            len(self.rules.lines),
            len(self.rules.zones),
            len(self.rules.alerts),
        )

    def __call__(self, work: Work) -> None:
        self._take_rules()
        if not self.active:
            return
        frame = work.frame
        frame_id = contract.frame_id(self.stream_name, frame.source)
        height, width = frame.image.shape[:2]
        info = FrameInfo(frame_id, frame.clock, layout.frame_key(frame_id), width, height)
        events = self.analyser.update(info, work.detections)
        for event in events:
            self.metrics.event(event)
            log.info("event %s %s %s", event["type"], event.get("rule") or "", event["event_id"])
        counts = self.analyser.counts()
        for zone, state in counts["zones"].items():
            self.metrics.gauge("ZoneOccupancy", sum(state["occupancy"].values()), Zone=zone)
        work.extra.update(events=events, counts=counts, rules=self.rules)

    def camera(self, type_: str, when: float) -> dict:
        """A camera_offline / camera_online event of this stream (marked as an alert by its rules)."""
        return self.analyser.camera(type_, when)

    def snapshot(self) -> dict:
        """The analyser's state, and beside it its running counts as frames carry them, which `kinase status`
        reads from the checkpoint (S3 or the stream's lease) without knowing the analyser."""
        return {"rules_version": self.version, "counts": self.analyser.counts(), "analyser": self.analyser.snapshot()}

    def restore(self, state: dict) -> None:
        self.analyser.restore(state["analyser"])

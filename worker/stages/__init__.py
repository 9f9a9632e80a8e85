"""The per-frame path as named stages, in order: read -> sample -> detect -> track -> analyse -> deliver.

`read` (a source, worker/sources/) and `sample` (its Sampler, worker/sources/sampling.py) run on the reader
thread, inside the source: sampling there lets a source skip decoding frames nobody will infer. The
frames kept cross the FrameQueue (worker/pipeline.py) to the inference thread, which runs the
stages of `STAGES` on each, in order:

    detect    worker/stages/detect.py    the model: work.detections, work.inference_ms
    track     worker/stages/track.py     the stream's tracker: a track_id on each detection of a confirmed track
    analyse   worker/stages/analyse.py   lines, zones, dwell, first sightings -> events and counts in work.extra
    deliver   worker/stages/deliver.py   hands the frame to the sinks (worker/sinks/)

Adding a stage is one module with a `Stage` subclass plus one line in `STAGES`, as sinks are. A stage:
- gets a `Work` (the frame, what the stages before it found) and changes it in place: replaces or
  annotates `work.detections`, puts what delivery should get beside the frame in `work.extra`;
- learns about the frames that never reached it from `work.skipped` and `work.gap_s` (sampled out,
  dropped live, corrupt, skipped in a gap: a tracker's real time gap);
- takes part in the checkpoint: `snapshot()` is called on the inference thread at each fragment
  end and after the last frame of a run, and what it returns (JSON-able, or None for nothing) is
  saved inside that checkpoint under `stages[<name>]`; at a resume `restore(state)` gets it back,
  so a restart or a lease hand-over continues from the state matching the checkpoint's position.
Stages run on the inference thread only: they need no locks of their own.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass, field

from worker.frames import Frame
from worker.metrics import Metrics
from worker.settings import Settings

STAGES = [
    "worker.stages.detect:Detect",
    "worker.stages.track:Track",
    "worker.stages.analyse:Analyse",
    "worker.stages.deliver:Deliver",
]


@dataclass
class Work:
    """One frame on its way through the stages."""

    frame: Frame
    skipped: int = 0  # frames read since the previous frame that reached the stages and never reached them
    gap_s: float | None = None  # media time since that previous frame (None: the first of this run)
    detections: list[dict] = field(default_factory=list)  # class, class_id, conf, bbox (normalised xywh)
    inference_ms: float = 0.0
    extra: dict = field(default_factory=dict)  # what delivery gets beside the frame (worker.sinks.Result.extra)


@dataclass
class Context:
    """What a stage may use to build itself: the settings, the stream's metrics, the detector, its delivery."""

    settings: Settings
    metrics: Metrics
    detector: object
    delivery: object  # worker.sinks.Delivery
    session: object = None
    rules: object = None  # worker.events.rules_in_force.RulesInForce: the rules in force (None: no rules)


class Stage:
    """A named step of the per-frame path; `snapshot`/`restore` default to no state."""

    name = ""

    @classmethod
    def from_context(cls, ctx: Context) -> Stage:
        raise NotImplementedError

    def __call__(self, work: Work) -> None:
        raise NotImplementedError

    def snapshot(self) -> object | None:
        """This stage's state to keep in the checkpoint (JSON-able), or None when it has none."""
        return None

    def restore(self, state: object) -> None:
        """Continue from a state `snapshot` returned, read back from the checkpoint resumed from."""


class Stages:
    """The stages of `paths` (default `STAGES`) in order, for one stream."""

    def __init__(self, ctx: Context, paths: list[str] | None = None):
        self.stages: list[Stage] = [pkgutil.resolve_name(path).from_context(ctx) for path in paths or STAGES]
        self._previous: Frame | None = None

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def named(self, name: str) -> Stage | None:
        return next((stage for stage in self.stages if stage.name == name), None)

    def __call__(self, frame: Frame) -> Work:
        """Run every stage on `frame`; returns what they made of it."""
        previous, self._previous = self._previous, frame
        work = Work(frame)
        if previous is not None:
            work.skipped = max(0, frame.frame_index - previous.frame_index - 1)
            work.gap_s = frame.clock - previous.clock
        for stage in self.stages:
            stage(work)
        return work

    def snapshot(self) -> dict:
        """{name: state} of the stages that have a state (empty when none has)."""
        states = {stage.name: stage.snapshot() for stage in self.stages}
        return {name: state for name, state in states.items() if state is not None}

    def restore(self, states: dict | None) -> None:
        for stage in self.stages:
            if stage.name in (states or {}):
                stage.restore(states[stage.name])

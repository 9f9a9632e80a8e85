"""The `deliver` stage, last: the frame, its detections and what the stages attached go to the sinks (worker/sinks/)."""

from __future__ import annotations

from worker.stages import Context, Stage, Work


class Deliver(Stage):
    name = "deliver"

    def __init__(self, delivery):
        self.delivery = delivery

    @classmethod
    def from_context(cls, ctx: Context) -> Deliver:
        return cls(ctx.delivery)

    def __call__(self, work: Work) -> None:
        self.delivery.submit(work.frame, work.detections, work.inference_ms, extra=work.extra)

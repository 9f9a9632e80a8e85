"""The `detect` stage: the model's detections for the frame (worker/detector/)."""

from __future__ import annotations

from worker.stages import Context, Stage, Work


class Detect(Stage):
    name = "detect"

    def __init__(self, detector, metrics):
        self.detector, self.metrics = detector, metrics

    @classmethod
    def from_context(cls, ctx: Context) -> Detect:
        return cls(ctx.detector, ctx.metrics)

    def __call__(self, work: Work) -> None:
        work.detections, work.inference_ms = self.detector.detect(work.frame.image)
        self.metrics.count("FramesProcessed")
        self.metrics.time("InferenceMs", work.inference_ms)

"""Which processed frames get their annotated JPEG in S3 (KINASE_UPLOAD).

S3 PUTs are most of what a stream costs when every frame is uploaded (`kinase cost`), and the
PutObject call is also the largest piece of the worker's CPU beyond inference
(docs/BENCHMARKS.md). Every processed frame still gets its SQS message; one whose JPEG was not
uploaded carries `key: null` (docs/CONTRACT.md). `every:N` counts the frame's own index, so a
frame done again after a restart makes the same choice.
"""

from __future__ import annotations

from dataclasses import dataclass

CHOICES = "`all`, `detections` (frames with at least one detection), `every:N` or `none`"


@dataclass(frozen=True)
class UploadPolicy:
    mode: str  # all | detections | every | none
    every: int = 1

    def wants(self, frame_index: int, detections: list) -> bool:
        if self.mode == "all":
            return True
        if self.mode == "detections":
            return bool(detections)
        if self.mode == "every":
            return frame_index % self.every == 0
        return False


def parse(value: str) -> UploadPolicy:
    """The policy a KINASE_UPLOAD value names; ValueError with the reason otherwise."""
    text = value.strip().lower()
    if text in ("all", "detections", "none"):
        return UploadPolicy(text)
    mode, _, n = text.partition(":")
    if mode == "every" and n.isdigit() and int(n) >= 1:
        return UploadPolicy("every", int(n))
    raise ValueError(f"must be {CHOICES.replace('`', '')}")

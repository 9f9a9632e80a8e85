"""Which frames get inferred: every N-th frame, or a target rate measured on the media's own clock."""

from __future__ import annotations


class Sampler:
    """`every` keeps frames 0, N, 2N...; `fps` keeps the first frame at or after each 1/fps tick of media time.

    Media time (not the wall clock) decides, so a recorded file sampled at 2 fps gives the same
    frames however fast it is read.
    """

    def __init__(self, every: int = 1, fps: float = 0.0):
        self.every = max(1, every)
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._count = 0
        self._next_due: float | None = None

    def wants_any(self, media_times: list[float]) -> bool:
        """Whether any of these upcoming frames could be kept; False lets a source skip decoding them all."""
        if not self.period or self.every != 1 or self._next_due is None:
            return True
        return any(t >= self._next_due - 1e-6 for t in media_times)

    def keep(self, media_time: float) -> bool:
        index, self._count = self._count, self._count + 1
        if index % self.every:
            return False
        if not self.period:
            return True
        if self._next_due is None or media_time >= self._next_due - 1e-6:
            base = media_time if self._next_due is None or media_time - self._next_due > self.period else self._next_due
            self._next_due = base + self.period
            return True
        return False

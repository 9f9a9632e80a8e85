"""Sinks for tests of the sink chain (worker/sinks): they record what reaches them, in order."""

from __future__ import annotations

from collections.abc import Callable

from worker.sinks import Context, Result


class Recording:
    """A required sink that has a result as soon as it is submitted; `seen` is shared by the test."""

    name = "recording"
    required = True
    seen: list[tuple[str, str]] = []

    def __init__(self, ctx: Context, done: Callable[[Result], None]):
        self.ctx, self.done = ctx, done

    @classmethod
    def from_context(cls, ctx: Context, done: Callable[[Result], None]) -> Recording:
        return cls(ctx, done)

    def submit(self, result: Result) -> None:
        self.seen.append((self.name, result.frame_id))
        self.deliver(result)

    def deliver(self, result: Result) -> None:
        self.done(result)

    def close(self, deadline: float) -> bool:
        return True


class Second(Recording):
    name = "second"


class Broken(Recording):
    """An optional sink whose every delivery fails (a webhook that is down)."""

    name = "broken"
    required = False

    def deliver(self, result: Result) -> None:
        self.ctx.fail(ConnectionError("webhook down"))

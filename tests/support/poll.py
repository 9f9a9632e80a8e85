"""The one way a test waits: poll a condition until it holds, with a generous deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], what: str | Callable[[], str] = "the condition", *, timeout: float = 60.0, every: float = 0.1) -> T:
    """Call `condition()` every `every` seconds until it returns something truthy, and return that.

    Past `timeout` the test fails naming `what` (a callable is asked then, for the state it ended in). The
    timeout is a deadline for a loaded machine, not a measurement: no test passes or fails by how fast it is.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(every)

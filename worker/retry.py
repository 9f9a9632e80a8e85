"""The one retry policy of kinase: which AWS errors are transient, how long to wait before the next try,
and how long a write keeps trying.

Used by the worker (worker/aws.py, the sinks, the checkpoint stores, the sources) and by `kinase
watch`. botocore's standard retry mode (`BOTOCORE_RETRIES`) absorbs short bursts of throttling, 5xx
and dropped connections inside each call; on top of it, callers retry what botocore gives up on with
`keep_trying` (reads: for a bounded time) or `WritePolicy.write` (every write of the worker: frames,
messages, checkpoints in S3 or in the lease table) and, for `watch`, `Backoff` until the operator
stops it. A write keeps trying for KINASE_WRITE_PATIENCE seconds (0, the default: until it succeeds
or the worker is stopped), so an outage costs no worker its life; one pending longer than
KINASE_WRITE_WARN_AFTER logs a warning while it is still out, and its recovery one line.
`count_retries` counts every HTTP attempt after the first, botocore's own included, so the metrics
say how often a call was sent again.

This module imports no AWS library: `kinase --help` and the watcher's import stay light.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("kinase.worker.retry")
T = TypeVar("T")

BOTOCORE_RETRIES = {"mode": "standard", "max_attempts": 4}
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ClientLimitExceededException",
        "ConnectionLimitExceededException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "KMS.ThrottlingException",
        "KmsThrottlingException",
    }
)
# botocore's connection and timeout errors, by class name so that classifying imports no botocore.
TRANSIENT_EXCEPTIONS = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ProxyConnectionError",
        "ResponseStreamingError",
        "IncompleteReadError",
        "ProtocolError",
    }
)


class FatalError(RuntimeError):
    """An error retrying cannot fix (missing bucket, denied access), or a write out of patience; the worker exits 1 with this line."""


class Abandoned(FatalError):
    """A write given up because the worker stopped and its shutdown budget ran out; the frame is left unfinished."""


class Incomplete(Exception):
    """Part of a batch call failed in a way worth retrying (SendMessageBatch entries without SenderFault)."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later can succeed without anyone changing anything."""
    if any(cls.__name__ in TRANSIENT_EXCEPTIONS for cls in type(exc).__mro__):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError, Incomplete)):
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    return False


def describe(exc: BaseException) -> str:
    """One line for a failure: the AWS error code and message, or the exception's first line."""
    code = error_code(exc)
    if code:
        message = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return f"{code}: {message}".strip().rstrip(":")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def delay(attempt: int, base: float = 0.2, cap: float = 5.0) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): exponential with full jitter."""
    return random.uniform(0, min(cap, base * 2**attempt))


class Backoff:
    """`delay` for a loop that keeps retrying: the attempt counter grows until `reset()` after a success."""

    def __init__(self, base: float = 0.2, cap: float = 5.0):
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        self.attempt += 1
        return delay(self.attempt, self.base, self.cap)

    def reset(self) -> None:
        self.attempt = 0


def keep_trying(
    fn: Callable[[], T],
    *,
    what: str,
    patience: float,
    on_failure: Callable[[BaseException, int], None] | None = None,
    abandoned: threading.Event | None = None,
) -> T:
    """Call `fn` until it succeeds, retrying transient errors with jittered backoff for `patience` seconds (0: no limit).

    `on_failure(exc, attempt)` hears each transient failure; `abandoned` (set) ends the wait with `Abandoned`."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return fn()
        except FatalError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise FatalError(f"{what} failed: {describe(exc)}") from exc
            if patience and time.monotonic() - started > patience:
                raise FatalError(f"{what} still failing after {patience:.0f}s: {describe(exc)}") from exc
            attempt += 1
            if on_failure:
                on_failure(exc, attempt)
            if abandoned is None:
                time.sleep(delay(attempt))
            elif abandoned.wait(delay(attempt)):
                raise Abandoned(f"{what} abandoned after {time.monotonic() - started:.0f}s: {describe(exc)}") from exc


@dataclass
class _Pending:
    what: str
    started: float
    error: str = ""  # the last failure; "" while the first try is still out
    warn_at: float = 0.0  # pending seconds of the next warning


class WritePolicy:
    """How every write of the worker keeps trying, and says so while it does.

    `write` retries transient failures for `patience` seconds (0: until it succeeds or the worker
    abandons it after a stop). `check`, called about every second by the worker's ticker (so that a
    write blocked in a call that does not answer is noticed too), logs a WARNING for each write
    pending longer than `warn_after` seconds, again each time its wait doubles; the write that then
    succeeds logs one INFO line with how long it took."""

    def __init__(self, patience: float = 0.0, warn_after: float = 30.0):
        self.patience, self.warn_after = patience, warn_after
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._abandoned = threading.Event()

    def write(self, fn: Callable[[], T], *, what: str, on_retry: Callable[[BaseException], None] | None = None) -> T:
        pending = _Pending(what, time.monotonic(), warn_at=self.warn_after)
        with self._lock:
            self._pending[id(pending)] = pending

        def failed(exc: BaseException, attempt: int) -> None:
            pending.error = describe(exc)
            if on_retry:
                on_retry(exc)
            log.debug("%s failed (%s), retry %d", what, pending.error, attempt)

        try:
            result = keep_trying(fn, what=what, patience=self.patience, on_failure=failed, abandoned=self._abandoned)
        finally:
            with self._lock:
                del self._pending[id(pending)]
        if pending.warn_at > self.warn_after:
            log.info("%s recovered after %.0fs", what, time.monotonic() - pending.started)
        return result

    def check(self) -> None:
        """Warn about writes pending longer than `warn_after` (each once, then each time its wait doubles)."""
        now = time.monotonic()
        with self._lock:
            due = [p for p in self._pending.values() if now - p.started >= p.warn_at]
            for p in due:
                p.warn_at = 2 * (now - p.started)
        for p in due:
            log.warning("%s pending %.0fs: %s, still trying", p.what, now - p.started, p.error or "no answer yet")

    def struggling(self) -> bool:
        """Whether a write is failing or has been pending longer than `warn_after` now (an outage)."""
        now = time.monotonic()
        with self._lock:
            return any(p.error or now - p.started >= self.warn_after for p in self._pending.values())

    def abandon(self) -> None:
        """Stop waiting: every write still retrying raises `Abandoned` (after a stop, when the shutdown budget is spent)."""
        self._abandoned.set()


def count_retries(events, on_retry: Callable[[str], None]) -> None:
    """Call `on_retry(operation)` for each HTTP attempt after the first of any call made by the clients
    of the botocore event emitter `events` (a session's, before its clients are created)."""

    def created(request, operation_name: str = "", **_) -> None:
        if getattr(request, "context", {}).get("retries", {}).get("attempt", 1) > 1:
            on_retry(operation_name)

    events.register("request-created", created)

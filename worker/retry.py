"""The one retry policy of kinase: which AWS errors are transient, and how long to wait before the next try.

Used by the worker (worker/aws.py, the sinks, the sources) and by `kinase watch`. botocore's
standard retry mode (`BOTOCORE_RETRIES`) absorbs short bursts of throttling, 5xx and dropped
connections inside each call; on top of it, callers retry what botocore gives up on with
`Backoff` for as long as their job allows (the worker: minutes, so an S3 SlowDown for a minute
loses no frame; `watch`: until the operator stops it), and resend the entries a batch call
reports as failed, which botocore does not do. `count_retries` counts every HTTP attempt after
the first, botocore's own included, so the metrics say how often a call was sent again.

This module imports no AWS library: `kinase --help` and the watcher's import stay light.
"""

from __future__ import annotations

import random
from collections.abc import Callable

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


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code", "") if isinstance(response, dict) else ""


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later can succeed without anyone changing anything."""
    if any(cls.__name__ in TRANSIENT_EXCEPTIONS for cls in type(exc).__mro__):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    return False


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


def count_retries(events, on_retry: Callable[[str], None]) -> None:
    """Call `on_retry(operation)` for each HTTP attempt after the first of any call made by the clients
    of the botocore event emitter `events` (a session's, before its clients are created)."""

    def created(request, operation_name: str = "", **_) -> None:
        if getattr(request, "context", {}).get("retries", {}).get("attempt", 1) > 1:
            on_retry(operation_name)

    events.register("request-created", created)

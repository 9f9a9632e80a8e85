"""boto3 clients for the worker, and the worker's use of the retry policy (worker/retry.py).

The worker ships without kinase_cli, so it builds its own clients. Endpoints come from the standard
variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_KINESIS_VIDEO), which boto3 honours by itself.
botocore's standard retry mode absorbs short bursts of throttling; `retry` keeps going with backoff
for a longer outage (S3 SlowDown for a minute must not lose frames) and gives up on errors that
retrying cannot fix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, ResponseStreamingError  # noqa: F401 (used by the sources)

from worker import callrecord
from worker.retry import BOTOCORE_RETRIES, delay, error_code, is_transient

log = logging.getLogger("kinase.worker.aws")
T = TypeVar("T")

RETRY_CONFIG = Config(retries=BOTOCORE_RETRIES, connect_timeout=5, read_timeout=30, max_pool_connections=16)


class FatalError(RuntimeError):
    """An error retrying cannot fix (missing bucket, denied access); the worker exits 1 with this line."""


def session() -> boto3.session.Session:
    return boto3.session.Session()


def client(sess: boto3.session.Session, service: str, **kwargs):
    config = kwargs.pop("config", None)
    made = sess.client(service, config=RETRY_CONFIG.merge(config) if config else RETRY_CONFIG, **kwargs)
    callrecord.install(made.meta.events, "worker")
    return made


def describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        message = exc.response.get("Error", {}).get("Message", "")
        return f"{error_code(exc) or 'Error'}: {message}".strip().rstrip(":")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def retry(fn: Callable[[], T], *, what: str, give_up_after: float = 300.0, on_retry: Callable[[], None] | None = None) -> T:
    """Call `fn` until it succeeds, retrying transient errors with jittered backoff for `give_up_after` seconds."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise FatalError(f"{what} failed: {describe(exc)}") from exc
            if time.monotonic() - started > give_up_after:
                raise FatalError(f"{what} still failing after {give_up_after:.0f}s: {describe(exc)}") from exc
            attempt += 1
            if on_retry:
                on_retry()
            log.warning("%s failed (%s), retry %d", what, describe(exc), attempt)
            time.sleep(delay(attempt))

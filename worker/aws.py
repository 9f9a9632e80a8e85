"""boto3 clients for the worker, and the worker's use of the retry policy (worker/retry.py).

The worker ships without kinase_cli, so it builds its own clients. Endpoints come from the standard
variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_KINESIS_VIDEO), which boto3 honours by itself.
botocore's standard retry mode absorbs short bursts of throttling; `retry` keeps a read going with
backoff for a while and gives up on errors that retrying cannot fix; writes follow the write policy
(worker/retry.py `WritePolicy`). Read timeouts are short (`READ_TIMEOUT`, KINASE_CALL_TIMEOUT for S3 and SQS): an S3, SQS or DynamoDB call
answers in well under a second, so a call with no answer is noticed in seconds and sent again,
instead of blocking its thread for minutes (GetMedia sets its own, for idle streams).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, ResponseStreamingError  # noqa: F401 (used by the sources)

from worker import callrecord
from worker.retry import BOTOCORE_RETRIES, FatalError, describe, keep_trying

__all__ = ["FatalError", "describe"]  # the worker's names for them

log = logging.getLogger("kinase.worker.aws")
T = TypeVar("T")

READ_TIMEOUT = 10  # seconds a call may send back nothing before botocore drops the connection and tries again (KINASE_CALL_TIMEOUT)
CONNECT_TIMEOUT = 5
RETRY_CONFIG = Config(retries=BOTOCORE_RETRIES, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, max_pool_connections=16)


LEASE_CALL_SHARE = 8  # a lease call may take at most 1/8 of the lease duration per attempt (connect or read)
LEASE_CALL_MIN_TIMEOUT = 2.0  # seconds; only leases under 16 s reach it (the default 15 s: 2 attempts of 2 s, under its 5 s interval)
LEASE_ATTEMPTS = 2  # botocore attempts per lease call: the lease loop tries again next renewal interval anyway


def lease_config(lease_duration: float) -> Config:
    """The lease table client's timeouts and retries, from the lease duration: a hanging call must not outlive the
    lease. Two attempts of lease_duration/8 each take a quarter of it, under the renewal interval (a third), so a
    renewal that hangs fails in time for the next one; botocore's default (60 s read x 4 attempts, or the worker's
    30 s x 4) kept a 15 s lease's owner believing in it for two minutes (issue 22). At least two seconds per attempt:
    a busy machine's scheduling delays are not hangs (a full test suite on two cores kept moto's answers to the
    few-second leases of the tests over a second; those workers then lost their own leases), and the lease's promise
    does not rest on this timeout anyway: the watchdog stops a pipeline at its belief end while a call hangs."""
    timeout = max(lease_duration / LEASE_CALL_SHARE, LEASE_CALL_MIN_TIMEOUT)
    return Config(retries={**BOTOCORE_RETRIES, "max_attempts": LEASE_ATTEMPTS}, connect_timeout=timeout, read_timeout=timeout)


def session() -> boto3.session.Session:
    return boto3.session.Session()


def client(sess: boto3.session.Session, service: str, **kwargs):
    config = kwargs.pop("config", None)
    made = sess.client(service, config=RETRY_CONFIG.merge(config) if config else RETRY_CONFIG, **kwargs)
    callrecord.install(made.meta.events, "worker")
    return made


def retry(fn: Callable[[], T], *, what: str, give_up_after: float = 300.0, on_retry: Callable[[], None] | None = None) -> T:
    """Call `fn` (a read) until it succeeds, retrying transient errors with jittered backoff for `give_up_after` seconds."""

    def failed(exc: BaseException, attempt: int) -> None:
        if on_retry:
            on_retry()
        log.warning("%s failed (%s), retry %d", what, describe(exc), attempt)

    return keep_trying(fn, what=what, patience=give_up_after, on_failure=failed)

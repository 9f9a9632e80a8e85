"""The AWS calls a process makes, one JSON line each, for the IAM check of the tests.

moto cannot judge IAM as AWS does (DESIGN.md, "Facts found this round"), so the end-to-end tests
record every call and check it against the policies that would judge it on AWS
(tests/e2e/test_iam_calls.py). When KINASE_RECORD_CALLS names a file, the CLI's session factory
(kinase_cli/aws/target.py) and the worker's client factory (worker/aws.py) register `record` on
botocore's `provide-client-params` event, and the PutMedia client, which botocore lacks, calls
`record_call` itself. Each line holds the principal (`cli` or `worker`), the IAM service prefix
(the signing name), the operation, the region and the request's scalar parameters, which name the
resource (bucket and key, queue URL, table, stream). Unset, installing costs one environment lookup.
Calls made `standing_in()` for what AWS does itself (kinase_cli/local/cfn_gaps.py completes what
moto's CloudFormation skips) are recorded as principal `local-stack`, which no policy judges.
It lives in worker/ because the worker never imports kinase_cli, while the CLI reads worker/.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial

VARIABLE = "KINASE_RECORD_CALLS"
STAND_IN = "local-stack"
_acting = ContextVar("kinase_recorded_principal", default="")
PAYLOAD_PARAMS = frozenset({"Body", "MessageBody", "TemplateBody", "imageManifest", "password"})
MAX_VALUE = 512


def path() -> str | None:
    return os.environ.get(VARIABLE) or None


def install(events, principal: str) -> None:
    """Record every call of the clients that `events` (a session's or a client's) serves, when recording is on."""
    if path():
        events.register("provide-client-params", partial(record, principal))


@contextmanager
def standing_in():
    """The calls inside (also as a decorator) are the local stack's, standing in for AWS's own."""
    token = _acting.set(STAND_IN)
    try:
        yield
    finally:
        _acting.reset(token)


def _scalars(params: dict) -> dict:
    kept = {}
    for name, value in params.items():
        if name in PAYLOAD_PARAMS:
            continue
        if isinstance(value, str | int | float | bool):
            kept[name] = value if not isinstance(value, str) else value[:MAX_VALUE]
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            kept[name] = [v[:MAX_VALUE] for v in value]
    return kept


def record(principal: str, params: dict, model, context: dict, **_) -> None:
    """botocore's `provide-client-params` handler: one line per call; returns nothing, so the call is unchanged."""
    record_call(principal, model.service_model.signing_name, model.name, context.get("client_region"), params)


def record_call(principal: str, service: str, operation: str, region: str | None, params: dict) -> None:
    target = path()
    if not target:
        return
    line = {
        "principal": _acting.get() or principal,
        "service": service,
        "operation": operation,
        "region": region,
        "params": _scalars(params),
    }
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(line, sort_keys=True) + "\n")

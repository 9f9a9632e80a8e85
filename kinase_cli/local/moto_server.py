"""moto's server, with DynamoDB's conditional writes made atomic.

DynamoDB evaluates a write's condition and applies the write as one step, so of two workers
racing to take one lease exactly one conditional write succeeds ("Condition expressions",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html;
the fleet's leases rely on it, as the Kinesis Client Library's do). moto's server answers requests
on several threads and checks a condition and writes the item as separate steps with no lock, so
two racing writes can both pass their condition. `kinase local up` runs this module instead of
`moto.server` so the local stack keeps DynamoDB's guarantee; tests running moto in-process call
`make_dynamodb_writes_atomic()`.
"""

from __future__ import annotations

import functools
import threading

WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def make_dynamodb_writes_atomic() -> None:
    """Serialise every item write of moto's DynamoDB backend (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_kinase_atomic", False):
            continue

        @functools.wraps(method)
        def atomic(self, *args, _method=method, **kwargs):
            with _lock:
                return _method(self, *args, **kwargs)

        atomic._kinase_atomic = True
        setattr(DynamoDBBackend, name, atomic)


def main() -> None:
    from moto.server import main as moto_main

    make_dynamodb_writes_atomic()
    moto_main()


if __name__ == "__main__":
    main()

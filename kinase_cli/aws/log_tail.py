"""Reading the worker's logs from CloudWatch for `logs` and `run-task --follow`.

It yields events {"timestamp": ISO, "task": id, "stream": name, "message": text}, as the local runs' tail
(kinase_cli/local/runs.py) does for `logs --local`. CloudWatch can deliver an event a little after later
ones (ingestion delay), so each poll looks back `LOOKBACK_MS` and drops events already seen by id.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone

from kinase_cli.ui.errors import KinaseError
from worker.contract import iso
from worker.retry import error_code

LOOKBACK_MS = 60_000
POLL_SECONDS_ENV = "KINASE_POLL_SECONDS"  # seconds between polls while following or waiting (default 5)
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_time(value: str, now: datetime | None = None) -> datetime:
    """`10m`, `2h`, `1d` ago, or an ISO 8601 time."""
    now = now or datetime.now(timezone.utc)
    match = _SINCE.match(value.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise KinaseError(f"cannot read --since {value!r}", "use e.g. 30s, 10m, 2h, 1d or an ISO time like 2026-01-31T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def poll_seconds() -> float:
    return float(os.environ.get(POLL_SECONDS_ENV) or 5)


class CloudWatchTail:
    """New events of a log group, optionally only the streams of some tasks (`prefix/<task id>`)."""

    def __init__(self, logs_client, group: str, since: datetime, stream_prefixes: list[str] | None = None):
        self.client = logs_client
        self.group = group
        self.start_ms = int(since.timestamp() * 1000)
        self.prefixes = stream_prefixes or [None]
        self.seen: set[str] = set()

    def poll(self) -> list[dict]:
        found: dict[str, dict] = {}
        for prefix in self.prefixes:
            request = {"logGroupName": self.group, "startTime": self.start_ms}
            if prefix:
                request["logStreamNamePrefix"] = prefix
            while True:
                try:
                    page = self.client.filter_log_events(**request)
                except Exception as exc:  # botocore ClientError, imported lazily
                    if error_code(exc) == "ResourceNotFoundException":
                        raise KinaseError(f"log group {self.group} does not exist", "run `kinase deploy`") from None
                    raise
                for event in page.get("events", []):
                    stream = event.get("logStreamName", "")
                    if prefix and not stream.startswith(prefix):
                        continue
                    if event["eventId"] not in self.seen:
                        found[event["eventId"]] = event
                token = page.get("nextToken")
                if not token or token == request.get("nextToken"):
                    break
                request["nextToken"] = token
        self.seen.update(found)
        events = sorted(found.values(), key=lambda e: (e["timestamp"], e["eventId"]))
        if events:
            self.start_ms = max(self.start_ms, events[-1]["timestamp"] - LOOKBACK_MS)
        return [
            {
                "timestamp": iso(e["timestamp"] / 1000),
                "task": e.get("logStreamName", "").rsplit("/", 1)[-1],
                "stream": e.get("logStreamName", ""),
                "message": e["message"].rstrip("\n"),
            }
            for e in events
        ]

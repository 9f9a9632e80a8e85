"""What `kinase events` has seen: events per type, duplicates, and the rows of its table.

Built on the watcher's `Stats`, so the queue depth, invalid messages, saves and connection state are
kept (and shown) the same way in both commands; frame figures simply stay at zero here.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from kinase_cli.watch.stats import Stats, format_detections


@dataclass(frozen=True)
class EventRow:
    """One line of the events table; every text field is still untrusted (the view escapes it)."""

    time: float
    stream: str
    type: str
    object: str
    where: str
    counts: str
    alert: bool


def describe_object(event: dict) -> str:
    """`person #12`; the class alone when there is no track, `-` for camera events."""
    cls, track = event.get("class"), event.get("track_id")
    if cls is None and track is None:
        return "-"
    return f"{cls or '?'}" + ("" if track is None else f" #{track}")


def describe_where(event: dict) -> str:
    """`door in` for a crossing, the zone's name for zone events, the rule otherwise."""
    if event.get("line") is not None:
        return f"{event['line']} {event.get('direction', '')}".rstrip()
    if event.get("zone") is not None:
        return event["zone"]
    return event.get("rule") or "-"


def describe_counts(counts: dict) -> str:
    """`in person×3 car×1 out person×2`, `occupancy person×1`: each part of the counts, classes most frequent first."""
    parts = []
    for part, per_class in counts.items():
        if isinstance(per_class, dict) and per_class:
            parts.append(f"{part} {format_detections(Counter(per_class))}")
        elif isinstance(per_class, dict):
            parts.append(f"{part} 0")
    return " ".join(parts) or "-"


@dataclass
class EventStats(Stats):
    events: int = 0
    duplicates: int = 0
    types: Counter = field(default_factory=Counter)
    alerts: int = 0

    def event(self, event: dict, now: float | None = None) -> EventRow:
        """Record one shown event and return its table row."""
        from worker.contract import parse_iso

        now = time.monotonic() if now is None else now
        row = EventRow(
            time=parse_iso(event["time"]),
            stream=event["stream_name"],
            type=event["type"],
            object=describe_object(event),
            where=describe_where(event),
            counts=describe_counts(event["counts"]),
            alert=bool(event["alert"]),
        )
        with self.lock:
            self.events += 1
            self.frames += 1  # the rate and the first/last times of `Stats` count shown messages
            self.types[row.type] += 1
            self.alerts += row.alert
            self._recent.append(now)
            self.first_frame_at = self.first_frame_at or now
            self.last_frame_at = now
            self.rows.append(row)
        return row

    def duplicate(self) -> None:
        with self.lock:
            self.duplicates += 1

    def summary(self) -> dict:
        return {
            "events": self.events,
            "types": dict(sorted(self.types.items())),
            "alerts": self.alerts,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "filtered": self.filtered,
            "saved": self.saved,
            "save_errors": self.save_errors,
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }

"""What the watcher has seen: per-class totals, rates, latency percentiles, lag, bad messages.

Shared by the live table, the plain-line output and the final summary, so all three agree.
Latency is the message's own `latency_ms` (frame time to send, measured by the worker); lag is
how far the newest frame seen is behind the watcher's clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

LATENCY_WINDOW = 2000
RATE_WINDOW_S = 5.0
ROWS = 200
STREAM_LATENCY_WINDOW = 500
# Accounting a worker may add to a message: frames dropped by the live policy, and gaps reported,
# since the stream's previous message. Read when present; absent means unknown, never zero.
DROP_FIELDS = ("frames_dropped", "dropped")
GAP_FIELDS = ("gaps", "frames_gapped")


@dataclass(frozen=True)
class Row:
    """One line of the table: a frame, or a message that failed validation."""

    frame_time: float | None
    stream: str
    frame: str
    detections: str
    best_conf: float | None
    latency_ms: float | None
    error: str | None = None
    inference_ms: float | None = None
    drops: int | None = None
    gaps: int | None = None


def accounted(message: dict, names: tuple[str, ...]) -> int | None:
    """The first of `names` the message carries as a count (a list counts its items); None when none is there."""
    for name in names:
        value = message.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, list):
            return len(value)
    return None


@dataclass
class StreamStats:
    """One stream's figures, for the per-stream rows when several streams report."""

    frames: int = 0
    inference_ms: float | None = None
    newest_frame_time: float | None = None
    drops: int | None = None
    gaps: int | None = None
    latencies: deque = field(default_factory=lambda: deque(maxlen=STREAM_LATENCY_WINDOW))
    recent: deque = field(default_factory=deque)
    counts: dict | None = None  # the running counts of the newest frame that carried them
    counts_at: tuple[float, int] | None = None  # that frame's (frame time, frame index)

    def record(self, message: dict, frame_time: float, now: float) -> None:
        """Count one shown frame of this stream; `now` is on the clock `fps` is later asked with.

        Counts are taken from the newest frame by its own time and index, not by arrival: SQS does
        not keep order, and an older frame's counts arriving late must not roll the totals back.
        """
        if "counts" in message and (self.counts_at is None or (frame_time, message["frame_index"]) >= self.counts_at):
            self.counts, self.counts_at = message["counts"], (frame_time, message["frame_index"])
        self.frames += 1
        self.inference_ms = float(message["inference_ms"])
        self.latencies.append(float(message["latency_ms"]))
        self.recent.append(now)
        self.newest_frame_time = max(frame_time, self.newest_frame_time or frame_time)
        for attr, names in (("drops", DROP_FIELDS), ("gaps", GAP_FIELDS)):
            value = accounted(message, names)
            if value is not None:
                setattr(self, attr, (getattr(self, attr) or 0) + value)

    def fps(self, now: float) -> float:
        while self.recent and self.recent[0] < now - RATE_WINDOW_S:
            self.recent.popleft()
        return len(self.recent) / RATE_WINDOW_S


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None when there is nothing to rank."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def reason_kind(reason: str) -> str:
    """The short kind of a validation failure (`not JSON`, `wrong schema`, `foreign bucket`, ...)."""
    return reason.split(":", 1)[0].split(" '", 1)[0]


def format_detections(counts: Counter) -> str:
    """`person×3 car×1`, most frequent first; `-` for none."""
    if not counts:
        return "-"
    return " ".join(f"{name}×{n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def format_tracked(detections: list[dict]) -> str:
    """`person×3 #12 #15 car×1`: each class's count, most frequent first, then its confirmed tracks' ids; `-` for none."""
    tracks: dict[str, list[int]] = {}
    for d in detections:
        if "track_id" in d:
            tracks.setdefault(d["class"], []).append(d["track_id"])
    counts = Counter(d["class"] for d in detections)
    if not counts:
        return "-"
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return " ".join(f"{name}×{n}" + "".join(f" #{t}" for t in sorted(tracks.get(name, ()))) for name, n in ordered)


@dataclass(frozen=True)
class Tally:
    """One line or zone of a stream's running counts (kinase.frame/1 `counts`), as every view shows it."""

    name: str
    kind: str  # "line" or "zone"
    into: int | None  # a line's crossings towards its in side; None for a zone
    out: int | None
    inside: int | None  # a zone's occupancy; None for a line
    by_class: str  # `in person×4 car×1 out person×3`, `person×2`; `-` when zero


def tallies(counts: dict) -> list[Tally]:
    """The lines (by name) then the zones (by name) of a frame's `counts`; parts a producer left out count as zero."""
    found = []
    for name, line in sorted((counts.get("lines") or {}).items()):
        into, out = line.get("in") or {}, line.get("out") or {}
        parts = [f"{label} {format_detections(Counter(per_class))}" for label, per_class in (("in", into), ("out", out)) if per_class]
        found.append(Tally(name, "line", sum(into.values()), sum(out.values()), None, " ".join(parts) or "-"))
    for name, zone in sorted((counts.get("zones") or {}).items()):
        occupancy = zone.get("occupancy") or {}
        found.append(Tally(name, "zone", None, None, sum(occupancy.values()), format_detections(Counter(occupancy))))
    return found


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    filtered: int = 0
    classes: Counter = field(default_factory=Counter)
    invalid: int = 0
    invalid_reasons: Counter = field(default_factory=Counter)
    save_errors: int = 0
    saved: int = 0
    newest_frame_time: float | None = None
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    queue_depth: int | None = None
    dlq_depth: int | None = None
    in_flight: int | None = None
    connection: str = "connected"
    notice: str | None = None
    rows: deque = field(default_factory=lambda: deque(maxlen=ROWS))
    streams: dict = field(default_factory=dict)  # stream name -> StreamStats
    inference_ms: float | None = None  # of the newest frame shown
    _latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    _recent: deque = field(default_factory=deque)
    _seen_invalid: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def frame(self, message: dict, detections: list[dict], now: float | None = None) -> Row:
        """Record one shown frame (its detections already filtered) and return its table row."""
        from worker.contract import parse_iso

        now = time.monotonic() if now is None else now
        counts = Counter(d["class"] for d in detections)
        frame_time = parse_iso(message["frame_time"])
        row = Row(
            frame_time=frame_time,
            stream=message["stream_name"],
            frame=str(message["frame_index"]),
            detections=format_tracked(detections),
            best_conf=max((d["conf"] for d in detections), default=None),
            latency_ms=float(message["latency_ms"]),
            inference_ms=float(message["inference_ms"]),
            drops=accounted(message, DROP_FIELDS),
            gaps=accounted(message, GAP_FIELDS),
        )
        with self.lock:
            self.inference_ms = row.inference_ms
            self.streams.setdefault(row.stream, StreamStats()).record(message, frame_time, now)
            self.frames += 1
            self.classes.update(counts)
            self._latencies.append(row.latency_ms)
            self._recent.append(now)
            self.first_frame_at = self.first_frame_at or now
            self.last_frame_at = now
            if self.newest_frame_time is None or frame_time > self.newest_frame_time:
                self.newest_frame_time = frame_time
            self.rows.append(row)
        return row

    def bad(self, message_id: str, reason: str) -> Row | None:
        """Record a message that failed validation; a redelivery of the same one is not counted again."""
        with self.lock:
            if message_id in self._seen_invalid:
                return None
            self._seen_invalid.add(message_id)
            self.invalid += 1
            self.invalid_reasons[reason_kind(reason)] += 1
            row = Row(None, "?", "?", "", None, None, error=reason)
            self.rows.append(row)
            return row

    def fps(self, now: float | None = None) -> float:
        """Frames per second over the last few seconds (the live rate)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            while self._recent and self._recent[0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            span = min(RATE_WINDOW_S, now - self.started)
            return len(self._recent) / span if span > 0 else 0.0

    def average_fps(self) -> float:
        """Frames per second from the first frame to the last (the summary's rate)."""
        if not self.frames or self.first_frame_at is None or self.last_frame_at is None:
            return 0.0
        span = self.last_frame_at - self.first_frame_at
        return self.frames / span if span > 0 else float(self.frames)

    def latency(self, q: float) -> float | None:
        with self.lock:
            values = list(self._latencies)
        return percentile(values, q)

    def lag_s(self, wall_now: float | None = None) -> float | None:
        if self.newest_frame_time is None:
            return None
        return max(0.0, (time.time() if wall_now is None else wall_now) - self.newest_frame_time)

    def summary(self) -> dict:
        """The end-of-run figures (printed on stderr, also handy for tests)."""
        return {
            "frames": self.frames,
            "classes": dict(sorted(self.classes.items())),
            "fps": round(self.average_fps(), 2),
            "latency_ms": {"p50": self.latency(50), "p95": self.latency(95)},
            "invalid": self.invalid,
            "filtered": self.filtered,
            "saved": self.saved,
            "save_errors": self.save_errors,
            "elapsed_s": round(time.monotonic() - self.started, 2),
            "counts": self.counts(),
        }

    def counts(self) -> dict[str, dict]:
        """Each stream's running counts, from its newest frame that carried them; streams without rules are left out."""
        with self.lock:
            return {name: s.counts for name, s in sorted(self.streams.items()) if s.counts is not None}

"""What the web view shows, fed by the watch session's `on_frame` hook: one tile per stream.

The session stays the only consumer: it receives, validates, deduplicates and acks; the hub only
sees the frames it shows, so the table and the page always agree. Strings from messages pass through
`visible` (control and bidi characters as escapes, as in the terminal); the page sets them as text,
never as HTML.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from kinase_cli.ui.text import visible
from kinase_cli.watch.stats import Stats, StreamStats, percentile, tallies
from kinase_cli.web.metrics import WINDOW_S

CHART_WINDOW_S = 300  # the charts show the last five minutes, one point per second
QUIET_AFTER_S = 10.0
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_TALLIES = 50  # lines and zones listed per tile: a message's `counts` is untrusted, and goes to the page on every update


@dataclass
class Second:
    at: int
    frames: int = 0
    latency_sum: float = 0.0
    lag_max: float = 0.0


@dataclass(kw_only=True)
class Tile(StreamStats):
    """One stream's figures as the table's per-stream rows count them, plus what the page draws; on wall-clock time."""

    id: int
    stream: str
    classes: Counter = field(default_factory=Counter)
    latest: list = field(default_factory=list)
    tracks: dict = field(default_factory=dict)  # class -> confirmed track ids in the newest frame
    frame_index: int | None = None
    size: tuple[int, int] | None = None  # the newest frame's width and height: the overlay's aspect
    latency_ms: float | None = None
    last_seen: float | None = None
    pending_key: str | None = None
    image_key: str | None = None
    image: bytes | None = None
    image_version: int = 0
    image_error: str | None = None
    seconds: deque = field(default_factory=lambda: deque(maxlen=CHART_WINDOW_S))


class Hub:
    """Per-stream state plus a background fetcher that keeps each stream's latest frame in memory."""

    def __init__(self, s3, bucket: str, queue_name: str, detections=None):
        self.s3, self.bucket, self.queue_name = s3, bucket, queue_name
        self.detections = detections or (lambda message: message["summary"])
        self.stats: Stats | None = None
        self.tiles: dict[str, Tile] = {}
        self.lock = threading.Lock()
        self.version = 0
        self.closed = threading.Event()
        self.new_stream = threading.Event()
        self.metrics: dict[str, dict[str, float]] | None = None  # from CloudWatch (web/metrics.py), None when not asked
        self.metrics_error: str | None = None
        self.rules = None  # worker.rules.Current in force (web/rules.py), None while none is applied or read
        self.rules_error: str | None = None
        self._wanted = threading.Condition(self.lock)
        self._fetcher = threading.Thread(target=self._fetch_loop, name="kinase-web-frames", daemon=True)
        self._fetcher.start()

    def frame(self, message: dict) -> None:
        """The session's `on_frame` hook: record one shown frame."""
        from worker.contract import parse_iso

        detections = self.detections(message)
        if detections is None:
            return
        now = time.time()
        frame_time = parse_iso(message["frame_time"])
        with self.lock:
            tile = self.tiles.get(message["stream_name"])
            if tile is None:
                tile = self.tiles[message["stream_name"]] = Tile(id=len(self.tiles) + 1, stream=message["stream_name"])
                self.new_stream.set()
            tile.record(message, frame_time, now)
            counts = Counter(d["class"] for d in detections)
            tile.classes.update(counts)
            tile.latest = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            tile.tracks = {}
            for d in detections:
                if "track_id" in d:
                    tile.tracks.setdefault(d["class"], []).append(d["track_id"])
            tile.frame_index = message["frame_index"]
            tile.size = (message["width"], message["height"])
            tile.latency_ms = float(message["latency_ms"])
            tile.last_seen = now
            second = int(now)
            if not tile.seconds or tile.seconds[-1].at != second:
                tile.seconds.append(Second(at=second))
            bucket = tile.seconds[-1]
            bucket.frames += 1
            bucket.latency_sum += tile.latency_ms
            bucket.lag_max = max(bucket.lag_max, max(0.0, now - frame_time))
            tile.pending_key = message["key"]
            self.version += 1
            self._wanted.notify()

    def stream_names(self) -> list[str]:
        with self.lock:
            return list(self.tiles)

    def worker_metrics(self, figures: dict[str, dict[str, float]], error: str | None) -> None:
        """The worker's own counts per stream (drops and gaps send no message); on error the last ones stay."""
        with self.lock:
            if error is None:
                self.metrics = figures
            elif self.metrics is None:
                self.metrics = {}
            self.metrics_error = error
            self.version += 1

    def rules_in_force(self, current, error: str | None) -> None:
        """The rules the workers apply (worker.rules.Current or None), read again every few seconds; on error the last ones stay."""
        with self.lock:
            if current is not self.rules or error != self.rules_error:
                self.rules, self.rules_error = current, error
                self.version += 1

    def image(self, tile_id: int) -> bytes | None:
        with self.lock:
            for tile in self.tiles.values():
                if tile.id == tile_id:
                    return tile.image
        return None

    def close(self) -> None:
        self.closed.set()
        with self.lock:
            self._wanted.notify_all()

    def _fetch_loop(self) -> None:
        """Fetch the newest key of each stream; a stream that moves on while a fetch runs skips the frames between."""
        while not self.closed.is_set():
            with self.lock:
                work = [(t.stream, t.pending_key) for t in self.tiles.values() if t.pending_key and t.pending_key != t.image_key]
                if not work:
                    self._wanted.wait(timeout=1.0)
                    continue
            for stream, key in work:
                data, error = self._get(key)
                with self.lock:
                    tile = self.tiles[stream]
                    tile.image_key = key
                    if data is not None:
                        tile.image, tile.image_error = data, None
                        tile.image_version += 1
                    else:
                        tile.image_error = error
                    self.version += 1

    def _get(self, key: str) -> tuple[bytes | None, str | None]:
        from kinase_cli.ui.errors import translate

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            data = body.read(MAX_IMAGE_BYTES + 1)
        except Exception as exc:
            described = translate(exc)
            return None, described.line() if described else f"{type(exc).__name__}: {exc}"
        if len(data) > MAX_IMAGE_BYTES:
            return None, f"frame larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB, not shown"
        return data, None

    def snapshot(self, now: float | None = None) -> dict:
        """Everything the page draws, as JSON-ready values (strings are untrusted text)."""
        now = time.time() if now is None else now
        head = {"queue": self.queue_name, "waiting": None, "in_flight": None, "dlq": None, "frames": 0, "invalid": 0}
        with self.lock:
            head.update(
                metrics_window_s=None if self.metrics is None else WINDOW_S,
                metrics_error=None if self.metrics_error is None else visible(self.metrics_error, limit=300),
                rules_version=None if self.rules is None else self.rules.version,
                rules_error=None if self.rules_error is None else visible(self.rules_error, limit=300),
            )
        if self.stats is not None:
            with self.stats.lock:
                head.update(
                    waiting=self.stats.queue_depth,
                    in_flight=self.stats.in_flight,
                    dlq=self.stats.dlq_depth,
                    frames=self.stats.frames,
                    invalid=self.stats.invalid,
                    connection=visible(self.stats.connection),
                )
        with self.lock:
            streams = [self._tile(t, now) for t in sorted(self.tiles.values(), key=lambda t: t.id)]
        return {"now": now, "window_s": CHART_WINDOW_S, **head, "streams": streams}

    def _tile(self, tile: Tile, now: float) -> dict:
        series = {"t": [], "fps": [], "latency_ms": [], "lag_s": []}
        for s in tile.seconds:
            if s.at >= now - CHART_WINDOW_S:
                series["t"].append(s.at)
                series["fps"].append(s.frames)
                series["latency_ms"].append(round(s.latency_sum / s.frames, 1))
                series["lag_s"].append(round(s.lag_max, 3))
        quiet = None if tile.last_seen is None else max(0.0, now - tile.last_seen)
        lag = None if tile.newest_frame_time is None else max(0.0, now - tile.newest_frame_time)
        p95 = percentile(list(tile.latencies), 95)
        return {
            "id": tile.id,
            "stream": visible(tile.stream),
            "frames": tile.frames,
            "frame_index": tile.frame_index,
            "classes": [(visible(name), n) for name, n in sorted(tile.classes.items(), key=lambda kv: (-kv[1], kv[0]))],
            "latest": [(visible(name), n) for name, n in tile.latest],
            "tracks": [(visible(name), sorted(ids)) for name, ids in sorted(tile.tracks.items())],
            "fps": round(tile.fps(now), 2),
            "inference_ms": tile.inference_ms,
            "latency_ms": tile.latency_ms,
            "latency_p95_ms": p95,
            "lag_s": None if lag is None else round(lag, 2),
            "quiet_s": None if quiet is None else round(quiet, 1),
            "quiet": quiet is not None and quiet >= QUIET_AFTER_S,
            "drops": tile.drops,
            "gaps": tile.gaps,
            "worker": {name: int(value) for name, value in (self.metrics or {}).get(tile.stream, {}).items()},
            "image_version": tile.image_version if tile.image is not None else 0,
            "image_error": None if tile.image_error is None else visible(tile.image_error, limit=300),
            "series": series,
            "size": tile.size,
            "overlay": self._overlay(tile.stream),
            "counts": self._counts(tile.counts),
        }

    def _overlay(self, stream: str) -> dict:
        """The stream's lines and zones in force, normalised 0..1 (x right, y down), names as untrusted text."""
        rules = None if self.rules is None else self.rules.rules.rules_for(stream)
        if rules is None:
            return {"lines": [], "zones": []}
        return {
            "lines": [{"name": visible(line.name), "points": line.points, "in_side": line.in_side} for line in rules.lines],
            "zones": [{"name": visible(zone.name), "polygon": zone.polygon} for zone in rules.zones],
        }

    @staticmethod
    def _counts(counts: dict | None) -> list[dict]:
        """The newest frame's running counts, a line or zone each (as `kinase watch` lists them)."""
        found = tallies(counts) if counts is not None else []
        return [
            {
                "kind": t.kind,
                "name": visible(t.name, limit=100),
                "in": t.into,
                "out": t.out,
                "inside": t.inside,
                "by_class": visible(t.by_class, limit=300),
            }
            for t in found[:MAX_TALLIES]
        ]

"""Worker metrics as CloudWatch embedded-metric-format (EMF) lines on stdout.

On Fargate stdout goes to CloudWatch Logs, where EMF lines become metrics without any metrics API
call or extra permission. Each line carries the counts of its interval and the averages and maxima
of the timings; `summary()` is the one human line logged at exit.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

NAMESPACE = "kinase/worker"
COUNTERS = {
    "FramesRead": "Count",  # every frame the source produced
    "FramesSampled": "Count",  # kept by sampling (every N / target fps)
    "FramesProcessed": "Count",  # inferred
    "FramesDelivered": "Count",  # JPEG in S3 and message in SQS
    "FramesDropped": "Count",  # live overload: older frames dropped to keep up
    "FramesSkipped": "Count",  # already delivered before a restart or reconnect
    "Fragments": "Count",
    "CorruptMedia": "Count",  # fragments or frames that could not be decoded
    "Reconnects": "Count",
    "DeliveryRetries": "Count",
    "Checkpoints": "Count",
}
TIMINGS = {"InferenceMs": "Milliseconds", "LatencyMs": "Milliseconds"}
GAUGES = {"MillisBehindNow": "Milliseconds"}


class Metrics:
    def __init__(self, stream: str, out: TextIO | None = None):
        self.stream = stream
        self.out = out or sys.stdout
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.totals = dict.fromkeys(COUNTERS, 0)
        self._window = dict.fromkeys(COUNTERS, 0)
        self._timings: dict[str, list[float]] = {k: [] for k in TIMINGS}
        self._all_timings: dict[str, tuple[float, int]] = {k: (0.0, 0) for k in TIMINGS}
        self.gauges: dict[str, float] = {}
        self._window_started = self.started

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.totals[name] += n
            self._window[name] += n

    def time(self, name: str, ms: float) -> None:
        with self._lock:
            self._timings[name].append(ms)
            total, n = self._all_timings[name]
            self._all_timings[name] = (total + ms, n + 1)

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    def emit(self) -> dict:
        """Write one EMF line for the interval since the last one; returns it."""
        now = time.monotonic()
        with self._lock:
            window, self._window = self._window, dict.fromkeys(COUNTERS, 0)
            timings, self._timings = self._timings, {k: [] for k in TIMINGS}
            gauges = dict(self.gauges)
            seconds, self._window_started = max(now - self._window_started, 1e-9), now
        record: dict = {"Stream": self.stream, **window}
        definitions = [{"Name": k, "Unit": u} for k, u in COUNTERS.items()]
        record["ProcessedFps"] = round(window["FramesProcessed"] / seconds, 3)
        definitions.append({"Name": "ProcessedFps", "Unit": "Count/Second"})
        for name, values in timings.items():
            if values:
                record[name] = round(sum(values) / len(values), 3)
                record[name + "Max"] = round(max(values), 3)
                definitions += [{"Name": name, "Unit": TIMINGS[name]}, {"Name": name + "Max", "Unit": TIMINGS[name]}]
        for name, value in gauges.items():
            record[name] = value
            definitions.append({"Name": name, "Unit": GAUGES[name]})
        record["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Stream"]], "Metrics": definitions}],
        }
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.out.flush()
        return record

    def mean(self, name: str) -> float:
        total, n = self._all_timings[name]
        return total / n if n else 0.0

    def summary(self) -> str:
        t = self.totals
        seconds = time.monotonic() - self.started
        fps = t["FramesProcessed"] / seconds if seconds > 0 else 0.0
        return (
            f"{self.stream}: read {t['FramesRead']}, processed {t['FramesProcessed']}, delivered {t['FramesDelivered']}, "
            f"dropped {t['FramesDropped']}, skipped {t['FramesSkipped']}, corrupt {t['CorruptMedia']}, "
            f"fragments {t['Fragments']}, reconnects {t['Reconnects']}, retries {t['DeliveryRetries']} in {seconds:.1f}s "
            f"({fps:.1f} fps, inference {self.mean('InferenceMs'):.1f} ms, latency {self.mean('LatencyMs'):.0f} ms)"
        )

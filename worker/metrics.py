"""Worker metrics as CloudWatch embedded-metric-format (EMF) lines on stdout.

On Fargate stdout goes to CloudWatch Logs, where EMF lines become metrics without any metrics API
call or extra permission. Each line carries the counts of its interval, the average and maximum
inference time, and every frame latency of the interval as an EMF array (at most EMF_MAX_VALUES per
line; the rest on further lines that carry only latencies), so the dashboard's p95 is a percentile
of frame latencies; `summary()` is the one human line logged at exit.

Accounting: every frame read (`FramesRead`) ends in exactly one of the OUTCOMES, so
`FramesRead == sum(OUTCOMES)` once the worker has stopped (`balance()` is the difference, 0 when
every frame is accounted for). A frame read again after a reconnect or a restart, at a position
already handled, is not read a second time: it counts as `FramesDeduplicated` only.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

log = logging.getLogger("kinase.worker.metrics")

NAMESPACE = "kinase/worker"
OUTCOMES = {
    "FramesDelivered": "delivered",  # message in SQS, and its JPEG in S3 unless the upload policy kept it out
    "FramesSampledOut": "sampled_out",  # not kept by sampling (every N / target fps)
    "FramesDropped": "dropped",  # live overload: older frames dropped to keep up
    "FramesGapped": "gapped",  # inside a reported gap (see `Metrics.gap`)
    "FramesCorrupt": "corrupt",  # could not be decoded
    "FramesUnfinished": "unfinished",  # read but not delivered when the worker stopped; not checkpointed, so a restart redoes them
    # fleet: read but not delivered because the stream's lease ended (or dropped past the last checkpoint written);
    # the worker that owns the stream now redoes them from that checkpoint, so they are not lost
    "FramesReleased": "released",
}
COUNTERS = {
    "FramesRead": "Count",  # every frame the source produced (at a position not handled before)
    **dict.fromkeys(OUTCOMES, "Count"),
    "FramesProcessed": "Count",  # inferred
    "FramesNotUploaded": "Count",  # delivered with `key` null: KINASE_UPLOAD kept the JPEG out of S3 (also in FramesDelivered)
    "FramesDeduplicated": "Count",  # read again at a position already handled (reconnect, restart); not in FramesRead
    "Fragments": "Count",
    "CorruptMedia": "Count",  # fragments or frames that could not be decoded (events; the frames are in FramesCorrupt)
    "Gaps": "Count",  # reported gaps (see `Metrics.gap`)
    "Reconnects": "Count",
    "Retries": "Count",  # AWS calls sent again: botocore's own retries and the worker's
    "MessagesResent": "Count",  # messages in a SendMessageBatch sent again: each may now be in the queue twice (same frame_id)
    "Events": "Count",  # kinase.event/1 events found by the analyse stage (lines, zones, dwell, first sightings, camera)
    "EventsPublished": "Count",  # events the SNS topic took (again after a restart redoes a frame: same event_id)
    "Checkpoints": "Count",
}
TIMINGS = {"InferenceMs": "Milliseconds", "LatencyMs": "Milliseconds"}
# Timings emitted as every value of the interval (an EMF array), not as mean and max: CloudWatch's
# percentiles of LatencyMs are then percentiles of frame latencies, not of 10-second means.
EVERY_VALUE = ("LatencyMs",)
EMF_MAX_VALUES = 100  # values one EMF metric may carry in one line; more go on further lines
GAUGES = {
    "MillisBehindNow": "Milliseconds",
    "DeliveryLagMs": "Milliseconds",  # how long the oldest frame in delivery has waited since it was read (0: none waits)
    "FrameBytesPeak": "Bytes",  # the most bytes of decoded frames that waited for inference at once, worker-wide (worker/framebudget.py)
}
# Counts with dimensions besides Stream, as the dashboard draws them (infra/stacks/dashboard.py EVENT_METRICS). An EMF
# document gives each dimension one value (its root key), so each combination of values goes out as a document of its
# own after the interval's line, declaring the dimension set {Stream, *these}.
DIMENSIONED = {
    "Events": ("Type",),  # per type; per stream alone it is the counter `Events` of the interval's line
    "LineCrossings": ("Line", "Direction"),
    "ZoneOccupancy": ("Zone",),  # a gauge: the objects in the zone at the interval's end, sent every interval
}


@dataclass(frozen=True)
class Gap:
    """Media of a stream the worker did not process, reported once: fragments `start`..`end`."""

    stream: str
    start: str  # first fragment not processed (or where it was: a checkpoint's fragment), "" if unknown
    end: str  # where processing resumed, "" if unknown
    fragments: int  # fragments not processed (0 if unknown)
    frames: int  # frames of them that were read and counted in FramesRead (also in FramesGapped)
    reason: str
    at: float = field(default_factory=time.time)  # when it was reported

    def record(self) -> dict:
        """As the checkpoint record keeps it for `kinase status`."""
        from worker.contract import iso

        return {
            "stream": self.stream,
            "from": self.start,
            "to": self.end,
            "fragments": self.fragments,
            "frames": self.frames,
            "reason": self.reason,
            "at": iso(self.at),
        }

    def describe(self) -> str:
        where = f"fragments {self.start or '?'}..{self.end or '?'}"
        return f"gap in {self.stream}: {where} ({self.fragments} fragments, {self.frames} frames read) not processed: {self.reason}"


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
        self._counted_by: dict[tuple, float] = {}  # the interval's DIMENSIONED counts: (name, ((dimension, value), ...)) -> n
        self._gauges_by: dict[tuple, float] = {}  # DIMENSIONED gauges, as keyed above
        self.gaps: list[Gap] = []
        self._window_started = self.started

    def count(self, name: str, n: int = 1, **dimensions: str) -> None:
        """Count `n` of the counter `name`, or with `dimensions` (DIMENSIONED) of that combination of values."""
        with self._lock:
            if dimensions:
                key = _dimensioned(name, dimensions)
                self._counted_by[key] = self._counted_by.get(key, 0) + n
                return
            self.totals[name] += n
            self._window[name] += n

    def event(self, event: dict) -> None:
        """A `kinase.event/1` event found: `Events` of the stream and of its type, a line crossing of its line and direction."""
        self.count("Events")
        self.count("Events", Type=event["type"])
        if event["type"] == "line_crossed":
            self.count("LineCrossings", Line=event["line"], Direction=event["direction"])

    def move(self, source: str, to: str, n: int) -> None:
        """Count `n` frames counted under `source` under `to` instead (the interval's line may then carry a negative
        `source`: its sum over time stays right)."""
        with self._lock:
            for name, delta in ((source, -n), (to, n)):
                self.totals[name] += delta
                self._window[name] += delta

    def gap(self, start: str, end: str, *, fragments: int = 0, frames: int = 0, reason: str, stream: str | None = None) -> Gap:
        """Report media that will not be processed: one warning line, `Gaps` + 1, `FramesGapped` + frames.

        `frames` are frames the source read (and counted in FramesRead) that fall inside the gap;
        fragments skipped without reading them are counted in `fragments` only."""
        gap = Gap(stream or self.stream, start, end, fragments, frames, reason)
        with self._lock:
            self.gaps.append(gap)
            for name, n in (("Gaps", 1), ("FramesGapped", frames)):
                self.totals[name] += n
                self._window[name] += n
        log.warning("%s", gap.describe())
        return gap

    def balance(self) -> int:
        """FramesRead minus the frames accounted for by an outcome: 0 when every frame is accounted for."""
        with self._lock:
            return self.totals["FramesRead"] - sum(self.totals[name] for name in OUTCOMES)

    def time(self, name: str, ms: float) -> None:
        with self._lock:
            self._timings[name].append(ms)
            total, n = self._all_timings[name]
            self._all_timings[name] = (total + ms, n + 1)

    def gauge(self, name: str, value: float, **dimensions: str) -> None:
        with self._lock:
            if dimensions:
                self._gauges_by[_dimensioned(name, dimensions)] = value
            else:
                self.gauges[name] = value

    def emit(self) -> dict:
        """Write one EMF line for the interval since the last one; returns it."""
        now = time.monotonic()
        with self._lock:
            window, self._window = self._window, dict.fromkeys(COUNTERS, 0)
            timings, self._timings = self._timings, {k: [] for k in TIMINGS}
            gauges = dict(self.gauges)
            dimensioned = [*self._counted_by.items(), *self._gauges_by.items()]
            self._counted_by = {}
            seconds, self._window_started = max(now - self._window_started, 1e-9), now
        record: dict = {"Stream": self.stream, **window}
        definitions = [{"Name": k, "Unit": u} for k, u in COUNTERS.items()]
        record["ProcessedFps"] = round(window["FramesProcessed"] / seconds, 3)
        definitions.append({"Name": "ProcessedFps", "Unit": "Count/Second"})
        every = {name: [round(v, 3) for v in timings.pop(name)] for name in EVERY_VALUE}
        for name, values in timings.items():
            if values:
                record[name] = round(sum(values) / len(values), 3)
                record[name + "Max"] = round(max(values), 3)
                definitions += [{"Name": name, "Unit": TIMINGS[name]}, {"Name": name + "Max", "Unit": TIMINGS[name]}]
        for name, values in every.items():
            if values:
                record[name] = values[:EMF_MAX_VALUES]
                definitions.append({"Name": name, "Unit": TIMINGS[name]})
        for name, value in gauges.items():
            record[name] = value
            definitions.append({"Name": name, "Unit": GAUGES[name]})
        record["_aws"] = {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["Stream"]], "Metrics": definitions}],
        }
        lines = [record] + [
            self._values_line(name, values[start : start + EMF_MAX_VALUES])
            for name, values in every.items()
            for start in range(EMF_MAX_VALUES, len(values), EMF_MAX_VALUES)
        ]
        lines += [self._dimensioned_line(name, dict(values), n) for (name, values), n in dimensioned]
        self.out.write("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
        self.out.flush()
        return record

    def _values_line(self, name: str, values: list[float]) -> dict:
        """An EMF line with only further values of one metric (an interval with more than EMF_MAX_VALUES frames)."""
        return {
            "Stream": self.stream,
            name: values,
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {"Namespace": NAMESPACE, "Dimensions": [["Stream"]], "Metrics": [{"Name": name, "Unit": TIMINGS[name]}]}
                ],
            },
        }

    def _dimensioned_line(self, name: str, dimensions: dict[str, str], value: float) -> dict:
        """An EMF document of one DIMENSIONED metric for one combination of its dimensions' values."""
        return {
            "Stream": self.stream,
            **dimensions,
            name: value,
            "_aws": {
                "Timestamp": int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {"Namespace": NAMESPACE, "Dimensions": [["Stream", *dimensions]], "Metrics": [{"Name": name, "Unit": "Count"}]}
                ],
            },
        }

    def mean(self, name: str) -> float:
        total, n = self._all_timings[name]
        return total / n if n else 0.0

    def summary(self) -> str:
        t = self.totals
        seconds = time.monotonic() - self.started
        fps = t["FramesProcessed"] / seconds if seconds > 0 else 0.0
        outcomes = ", ".join(f"{word.replace('_', ' ')} {t[name]}" for name, word in OUTCOMES.items())
        return (
            f"{self.stream}: read {t['FramesRead']} = {outcomes}; processed {t['FramesProcessed']}, "
            f"deduplicated {t['FramesDeduplicated']}, gaps {t['Gaps']}, corrupt media {t['CorruptMedia']}, "
            f"fragments {t['Fragments']}, reconnects {t['Reconnects']}, retries {t['Retries']}, resent {t['MessagesResent']} "
            f"in {seconds:.1f}s ({fps:.1f} fps, inference {self.mean('InferenceMs'):.1f} ms, latency {self.mean('LatencyMs'):.0f} ms)"
        )


def _dimensioned(name: str, dimensions: dict[str, str]) -> tuple:
    """The key of a DIMENSIONED metric's combination of values, its dimensions in the declared order."""
    if set(dimensions) != set(DIMENSIONED.get(name, ())):
        raise ValueError(f"{name} is counted by {DIMENSIONED.get(name)}, not {sorted(dimensions)}")
    return name, tuple((d, str(dimensions[d])) for d in DIMENSIONED[name])

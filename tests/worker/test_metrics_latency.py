"""The worker's EMF lines carry every frame latency of an interval, so CloudWatch's p95 is a frame p95.

CloudWatch documents that a metric value in an embedded-metric-format line may be an array of up
to 100 values ("Specification: Embedded metric format", CloudWatch User Guide); percentiles are then
taken over those values. A p95 of 10-second means (what a mean per line gives) is not a frame p95.
"""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest

from worker.metrics import EMF_MAX_VALUES, NAMESPACE, Metrics


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _latencies(records: list[dict]) -> list[float]:
    return [v for r in records for v in r.get("LatencyMs", [])]


def test_the_line_carries_each_frame_latency_and_their_p95_is_numpys():
    out = io.StringIO()
    metrics = Metrics("cam", out=out)
    known = [12.5, 80.0, 35.25, 40.0, 41.0, 900.125, 55.5, 60.0, 33.0, 47.75]
    for ms in known:
        metrics.time("LatencyMs", ms)
    record = metrics.emit()
    (line,) = _lines(out)
    assert line == record and record["LatencyMs"] == known
    (declared,) = record["_aws"]["CloudWatchMetrics"]
    assert {"Name": "LatencyMs", "Unit": "Milliseconds"} in declared["Metrics"]
    assert "LatencyMsMax" not in record  # the maximum is a statistic of the values themselves
    # One slow frame among ten: a frame p95 sees it, a p95 of interval means would not.
    assert np.percentile(record["LatencyMs"], 95) == pytest.approx(np.percentile(known, 95))
    assert np.percentile(record["LatencyMs"], 95) > 400 > np.mean(known) + 100


def test_more_than_100_frames_go_on_further_lines_with_only_latencies():
    out = io.StringIO()
    metrics = Metrics("cam", out=out)
    rng = random.Random(7)
    known = [round(rng.uniform(5, 500), 3) for _ in range(2 * EMF_MAX_VALUES + 30)]
    for ms in known:
        metrics.time("LatencyMs", ms)
    metrics.count("FramesDelivered", len(known))
    metrics.emit()
    first, *rest = _lines(out)
    assert EMF_MAX_VALUES == 100
    assert [len(r["LatencyMs"]) for r in (first, *rest)] == [100, 100, 30]
    assert _latencies([first, *rest]) == known  # every frame's latency, once, in order
    assert np.percentile(_latencies([first, *rest]), 95) == pytest.approx(np.percentile(known, 95))
    assert first["FramesDelivered"] == len(known)
    for extra in rest:  # counters only once: the further lines define LatencyMs alone
        assert set(extra) == {"Stream", "LatencyMs", "_aws"} and extra["Stream"] == "cam"
        (declared,) = extra["_aws"]["CloudWatchMetrics"]
        assert declared == {"Namespace": NAMESPACE, "Dimensions": [["Stream"]], "Metrics": [{"Name": "LatencyMs", "Unit": "Milliseconds"}]}


def test_an_interval_without_delivered_frames_has_no_latency_and_the_next_starts_empty():
    out = io.StringIO()
    metrics = Metrics("cam", out=out)
    metrics.time("LatencyMs", 20.0)
    assert metrics.emit()["LatencyMs"] == [20.0]
    assert "LatencyMs" not in metrics.emit()
    assert len(_lines(out)) == 2

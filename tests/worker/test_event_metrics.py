"""The events' metrics in the worker's embedded-metric-format (EMF) lines, as the dashboard draws them
(infra/stacks/dashboard.py EVENT_METRICS): Events per {Stream, Type} and per {Stream}, LineCrossings per
{Stream, Line, Direction}, ZoneOccupancy per {Stream, Zone}.

What makes an EMF document valid ("Specification: Embedded metric format", CloudWatch User Guide): `_aws` holds a
Timestamp and CloudWatchMetrics, a list of directives each with a Namespace, Dimensions (a list of dimension sets,
each a list of at most 30 names) and Metrics (Name, Unit); every dimension named is a root key with a string value,
every metric named is a root key with a number (or a list of numbers)."""

from __future__ import annotations

import io
import json
from collections import Counter

import pytest

from infra.stacks.dashboard import EVENT_METRICS
from kinase_cli.workflows.event_samples import RULES, events_video
from support.events_topic import events_topic
from support.worker_stack import run_worker
from worker import rules
from worker.metrics import DIMENSIONED, NAMESPACE, Metrics


def documents(text: str) -> list[dict]:
    """The EMF documents among these lines, each checked against the format."""
    found = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]
    for doc in found:
        meta = doc["_aws"]
        assert isinstance(meta["Timestamp"], int) and meta["CloudWatchMetrics"], doc
        for directive in meta["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for dimension_set in directive["Dimensions"]:
                assert 0 < len(dimension_set) <= 30 and all(isinstance(doc[d], str) for d in dimension_set), doc
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                assert all(isinstance(v, (int, float)) for v in (value if isinstance(value, list) else [value])), doc
    return found


def declared(docs: list[dict], names) -> dict[str, set[tuple[str, ...]]]:
    """The dimension sets each of `names` is declared with in these documents."""
    found: dict[str, set] = {}
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                if metric["Name"] in names:
                    found.setdefault(metric["Name"], set()).update(tuple(d) for d in directive["Dimensions"])
    return found


def values(docs: list[dict], name: str, *dimensions: str) -> list[tuple[tuple[str, ...], float]]:
    """(dimension values, value) of each document declaring `name` with exactly the set {Stream, *dimensions}."""
    wanted = ("Stream", *dimensions)
    return [
        (tuple(doc[d] for d in wanted), doc[name])
        for doc in docs
        for directive in doc["_aws"]["CloudWatchMetrics"]
        if wanted in map(tuple, directive["Dimensions"]) and any(m["Name"] == name for m in directive["Metrics"])
    ]


def test_the_dimensioned_metrics_are_the_dashboards():
    assert {name: {("Stream", *dims)} for name, dims in DIMENSIONED.items()} | {"Events": {("Stream", "Type"), ("Stream",)}} == {
        name: set(sets) for name, sets in EVENT_METRICS.items()
    }


def test_events_go_out_per_type_line_direction_and_zone_besides_the_stream_line():
    out = io.StringIO()
    metrics = Metrics("cam", out=out)
    crossing = {"type": "line_crossed", "line": "door", "direction": "in"}
    for event in [crossing, crossing, {**crossing, "direction": "out"}, {"type": "zone_entered", "zone": "bay"}]:
        metrics.event(event)
    metrics.gauge("ZoneOccupancy", 2, Zone="bay")
    metrics.emit()
    docs = documents(out.getvalue())

    assert declared(docs, EVENT_METRICS) == {name: set(sets) for name, sets in EVENT_METRICS.items()}
    assert values(docs, "Events") == [(("cam",), 4)]
    assert sorted(values(docs, "Events", "Type")) == [(("cam", "line_crossed"), 3), (("cam", "zone_entered"), 1)]
    assert sorted(values(docs, "LineCrossings", "Line", "Direction")) == [(("cam", "door", "in"), 2), (("cam", "door", "out"), 1)]
    assert values(docs, "ZoneOccupancy", "Zone") == [(("cam", "bay"), 2)]
    assert docs[0]["FramesRead"] == 0, "the interval's line comes first, its shape unchanged"

    # the next interval: counts start again (none counted: no document), the gauge goes on at its last value
    metrics.emit()
    docs = documents(out.getvalue())[len(docs) :]
    assert (
        values(docs, "Events") == [(("cam",), 0)]
        and not values(docs, "Events", "Type")
        and not values(docs, "LineCrossings", "Line", "Direction")
    )
    assert values(docs, "ZoneOccupancy", "Zone") == [(("cam", "bay"), 2)]


@pytest.mark.parametrize(
    "name, dimensions", [("LineCrossings", {"Line": "door"}), ("FramesRead", {"Zone": "bay"}), ("Events", {"Zone": "bay"})]
)
def test_a_metric_counted_by_dimensions_it_is_not_drawn_by_is_refused(name, dimensions):
    with pytest.raises(ValueError, match=name):
        Metrics("cam", out=io.StringIO()).count(name, **dimensions)


@pytest.mark.slow
def test_a_runs_metric_lines_carry_its_events_counts(media, tmp_path):
    """The events video through the one-off worker with a metric line every second: the lines' counts add up to the
    video's ground truth, per type, per line and direction, and the zone is empty at the end after holding objects."""
    video = events_video(tmp_path / "events.mp4", seed=0)
    target = media.fresh()
    topic, _queue = events_topic(media, target.stream)
    rules.publish(media.s3, target.bucket, RULES, applied_at="2026-12-07T00:00:00Z")

    run = run_worker(media.worker_env(target, str(video.path), events_topic_arn=topic, metrics_interval=1))

    assert run.returncode == 0, run.stderr
    docs = documents(run.stdout)
    assert set(declared(docs, EVENT_METRICS)) == set(EVENT_METRICS)
    per_type: Counter = Counter()
    for (_stream, type_), n in values(docs, "Events", "Type"):
        per_type[type_] += n
    truth = Counter(e["type"] for e in video.events)
    assert per_type == truth
    assert sum(n for _, n in values(docs, "Events")) == truth.total()
    crossings: Counter = Counter()
    for (_stream, line, direction), n in values(docs, "LineCrossings", "Line", "Direction"):
        crossings[line, direction] += n
    assert crossings == {("door", d): sum(c.values()) for d, c in video.counts["lines"]["door"].items()}
    occupancy = [n for (_stream, zone), n in values(docs, "ZoneOccupancy", "Zone") if zone == "bay"]
    assert max(occupancy) >= 1 and occupancy[-1] == 0

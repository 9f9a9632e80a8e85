"""The events' metrics in the worker's embedded-metric-format (EMF) lines, as the dashboard draws them
(infra/stacks/dashboard.py EVENT_METRICS): Events per {Stream, Type} and per {Stream}, LineCrossings per
{Stream, Line, Direction}, ZoneOccupancy per {Stream, Zone}.

What makes an EMF document valid ("Specification: Embedded metric format", CloudWatch User Guide): `_aws` holds a
Timestamp and CloudWatchMetrics, a list of directives each with a Namespace, Dimensions (a list of dimension sets,
each a list of at most 30 names) and Metrics (Name, Unit); every dimension named is a root key with a string value,
every metric named is a root key with a number (or a list of numbers)."""

from __future__ import annotations

import io

import pytest

from infra.stacks.dashboard import EVENT_METRICS
from support.emf import declared, documents, values
from worker.metrics import DIMENSIONED, Metrics


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

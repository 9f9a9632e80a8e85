"""The worker's embedded-metric-format (EMF) lines as CloudWatch reads them ("Specification: Embedded metric format",
CloudWatch User Guide): `_aws` holds a Timestamp and CloudWatchMetrics, a list of directives each with a Namespace,
Dimensions (a list of dimension sets, each a list of at most 30 names) and Metrics (Name, Unit); every dimension named is
a root key with a string value, every metric named is a root key with a number (or a list of numbers)."""

from __future__ import annotations

import json

from worker.metrics import NAMESPACE


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

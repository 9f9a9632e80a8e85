"""Pieces of the fleet worker (worker/fleet/main.py) that need no AWS: the shared detector's order, the scaling metric line."""

from __future__ import annotations

import io
import json
import threading

from worker.fleet.batching import BatchingDetector
from worker.fleet.leases import LeaseCoordinator
from worker.fleet.main import emit_share


class GatedDetector:
    """Records who was served; the first call waits for `gate`, so the others queue up behind it."""

    name = "gated"

    def __init__(self):
        self.gate = threading.Event()
        self.served: list[str] = []

    def detect(self, image):
        if not self.served:
            self.served.append(image)
            self.gate.wait(30)
            return [], 1.0
        self.served.append(image)
        return [], 1.0


def test_streams_are_served_in_the_order_they_asked():
    """A stream with a backlog asks again at once; first come, first served puts it behind the others."""
    inner = GatedDetector()
    shared = BatchingDetector(inner, max_batch=1, max_wait=0.0)  # KINASE_BATCH=1, the default
    assert shared.name == "gated"
    threads = [threading.Thread(target=shared.detect, args=("first",))]
    threads[0].start()
    while not inner.served:
        threading.Event().wait(0.01)
    order = [f"stream-{i}" for i in range(6)]
    for label in order:
        thread = threading.Thread(target=shared.detect, args=(label,))
        thread.start()
        threads.append(thread)
        while len(shared._pending) < len(threads) - 1:  # this one is queued (behind the first, running) before the next asks
            threading.Event().wait(0.01)
    inner.gate.set()
    for thread in threads:
        thread.join(30)
    assert inner.served == ["first", *order]


def test_scaling_metric_is_an_embedded_metric_line_per_environment():
    coordinator = LeaseCoordinator(None, "w1", None)
    coordinator.share = 2.5
    out = io.StringIO()
    emit_share(coordinator, "prod", out)
    record = json.loads(out.getvalue())
    assert (record["Environment"], record["StreamsPerWorker"], record["LeasedStreams"]) == ("prod", 2.5, 0)
    (metrics,) = record["_aws"]["CloudWatchMetrics"]
    assert metrics["Namespace"] == "kinase/worker" and metrics["Dimensions"] == [["Environment"]]
    assert {m["Name"] for m in metrics["Metrics"]} == {"StreamsPerWorker", "LeasedStreams"}

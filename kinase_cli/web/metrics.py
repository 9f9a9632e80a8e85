"""Drops and gaps from the worker's own metrics (CloudWatch, namespace `kinase/worker`) for the web view.

Messages describe delivered frames only: a frame the worker dropped or lost in a gap sends no
message. The worker counts those in its embedded metrics (worker/metrics.py), so the web view asks
CloudWatch for each stream it shows: sums over the last hours, refreshed every minute and as soon
as a new stream appears. A failure (no permission, no endpoint) is reported once on the page and
the tiles keep what the messages say.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from worker.metrics import NAMESPACE

WINDOW_S = 3 * 3600
EVERY_S = 60.0
FIGURES = {"drops": "FramesDropped", "gaps": "Gaps", "frames_gapped": "FramesGapped"}
MAX_QUERIES = 500  # GetMetricData's limit per call


class MetricsPoller:
    def __init__(self, cloudwatch, hub, every_s: float = EVERY_S):
        self.cloudwatch, self.hub, self.every_s = cloudwatch, hub, every_s
        self._thread = threading.Thread(target=self._loop, name="kinase-web-metrics", daemon=True)

    def start(self) -> MetricsPoller:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self.hub.closed.is_set():
            streams = self.hub.stream_names()
            if streams:
                try:
                    self.hub.worker_metrics(self.query(streams), error=None)
                except Exception as exc:
                    from kinase_cli.ui.errors import translate

                    described = translate(exc)
                    self.hub.worker_metrics({}, error=described.line() if described else f"{type(exc).__name__}: {exc}")
            self.hub.new_stream.wait(self.every_s)
            self.hub.new_stream.clear()

    def query(self, streams: list[str]) -> dict[str, dict[str, float]]:
        """{stream: {figure: sum over the window}}; a figure with no data points is left out."""
        end = datetime.now(timezone.utc) + timedelta(minutes=1)  # a point stamped this very second is inside
        queries, keys = [], {}
        for i, stream in enumerate(streams):
            for figure, metric in FIGURES.items():
                ident = f"m{i}_{figure}"
                keys[ident] = (stream, figure)
                queries.append(
                    {
                        "Id": ident,
                        "MetricStat": {
                            "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": [{"Name": "Stream", "Value": stream}]},
                            "Period": WINDOW_S,
                            "Stat": "Sum",
                        },
                        "ReturnData": True,
                    }
                )
        found: dict[str, dict[str, float]] = {}
        for start in range(0, len(queries), MAX_QUERIES):
            token = None
            while True:
                kwargs = {"NextToken": token} if token else {}
                reply = self.cloudwatch.get_metric_data(
                    MetricDataQueries=queries[start : start + MAX_QUERIES],
                    StartTime=end - timedelta(seconds=WINDOW_S),
                    EndTime=end,
                    **kwargs,
                )
                for result in reply.get("MetricDataResults", []):
                    if result.get("Values"):
                        stream, figure = keys[result["Id"]]
                        found.setdefault(stream, {})[figure] = found.get(stream, {}).get(figure, 0.0) + sum(result["Values"])
                token = reply.get("NextToken")
                if not token:
                    break
        return found

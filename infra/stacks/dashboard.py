"""The CloudWatch dashboard of an environment, from the worker's embedded metrics (worker/metrics.py).

One row per configured stream (processed fps, inference ms, latency p50/p95, lag behind live and
waiting in delivery, drops, gaps), the "all streams" row, the events row (per stream and type, line
crossings, zone occupancy: `EVENT_METRICS`), then the queue, the dead-letter queue and the running
tasks. Streams added later (a fleet picks them up without a deploy) appear in the "all streams" and
events rows, drawn by SEARCH expressions.
Its name is fixed (`naming.dashboard_name`) so the URL output needs no attribute of the resource.

Latency percentiles are of frames: the worker's metrics line carries every frame latency of its
interval (worker/metrics.py). Running tasks come from Container Insights (enabled on the cluster),
which publishes RunningTaskCount per {ClusterName, ServiceName} and TaskCount per {ClusterName} only
("Amazon ECS Container Insights metrics", CloudWatch User Guide): one line per fleet service, and the
one-off workers (`kinase run-task`) as the cluster's tasks less the services' tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra import naming
from infra.stacks.fleet import LEASES_METRIC, SCALING_METRIC
from infra.stacks.outputs import output
from worker.metrics import NAMESPACE

# Events (docs/EVENTS.md) as the worker counts them in its embedded metrics, by metric name: its
# dimension sets. Events per stream (and per type: line_crossed, zone_entered, ...), each line's
# crossings per direction (in/out), each zone's objects inside (a gauge, at the interval's end).
# Classes are no dimension: per class counts are in `kinase watch` and `kinase status`, and every
# class would multiply the custom metrics (each one billed) by the model's classes.
EVENT_METRICS = {
    "Events": (("Stream", "Type"), ("Stream",)),
    "LineCrossings": (("Stream", "Line", "Direction"),),
    "ZoneOccupancy": (("Stream", "Zone"),),
}
PERIOD = cdk.Duration.minutes(1)
INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
WIDTH = 24
STREAM_WIDGETS = 6


def _metric(name: str, stream: str, statistic: str, label: str) -> cw.Metric:
    return cw.Metric(
        namespace=NAMESPACE, metric_name=name, dimensions_map={"Stream": stream}, statistic=statistic, label=label, period=PERIOD
    )


def _graph(title: str, left: list[cw.IMetric], unit: str, width: int = WIDTH // STREAM_WIDGETS) -> cw.GraphWidget:
    return cw.GraphWidget(title=title, left=left, width=width, height=5, left_y_axis=cw.YAxisProps(label=unit, show_units=False, min=0))


def stream_widgets(stream: str) -> list[cw.IWidget]:
    """The six graphs of one stream's row."""
    return [
        _graph(f"{stream}: processed fps", [_metric("ProcessedFps", stream, "Average", "fps")], "frames/s"),
        _graph(
            f"{stream}: inference ms",
            [_metric("InferenceMs", stream, "Average", "mean"), _metric("InferenceMsMax", stream, "Maximum", "max")],
            "ms",
        ),
        _graph(
            f"{stream}: latency p50/p95",
            [_metric("LatencyMs", stream, "p50", "p50"), _metric("LatencyMs", stream, "p95", "p95")],
            "ms",
        ),
        _graph(
            f"{stream}: lag behind live",
            # DeliveryLagMs grows while S3 or SQS does not answer (metrics come on a timer), when MillisBehindNow need not
            [_metric("MillisBehindNow", stream, "Maximum", "behind now"), _metric("DeliveryLagMs", stream, "Maximum", "delivery waiting")],
            "ms",
        ),
        _graph(f"{stream}: drops", [_metric("FramesDropped", stream, "Sum", "frames dropped")], "frames"),
        _graph(
            f"{stream}: gaps",
            [_metric("Gaps", stream, "Sum", "gaps"), _metric("FramesGapped", stream, "Sum", "frames in gaps")],
            "count",
        ),
    ]


def _search(metric: str, statistic: str, label: str, dimensions: tuple[str, ...] = ("Stream",)) -> cw.MathExpression:
    """Every stream's (and line's, zone's...) series of `metric` with exactly these dimensions, those added later too."""
    schema = ",".join((NAMESPACE, *dimensions))
    return cw.MathExpression(
        expression=f"SEARCH('{{{schema}}} MetricName=\"{metric}\"', '{statistic}', {int(PERIOD.to_seconds())})",
        label=label,
        using_metrics={},
        period=PERIOD,
    )


def dashboard_url(name: str) -> str:
    return f"https://{cdk.Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={cdk.Aws.REGION}#dashboards/dashboard/{name}"


class WorkerDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        env_name: str,
        streams: Sequence[str],
        cluster_name: str,
        services: Mapping[str, str],
        queue_name: str,
        dead_letter_queue_name: str,
    ) -> None:
        """`services`: the cluster's ECS services by the label their running tasks get (the fleet's)."""
        super().__init__(scope, id)
        name = naming.dashboard_name(env_name)
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=name, default_interval=cdk.Duration.hours(3))
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# kinase {env_name}\nWorker metrics (namespace `{NAMESPACE}`, one row per stream), the results queue and the tasks.",
                width=WIDTH,
                height=2,
            )
        )
        for stream in streams:
            self.dashboard.add_widgets(*stream_widgets(stream))

        def sqs(metric: str, queue: str, label: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/SQS",
                metric_name=metric,
                dimensions_map={"QueueName": queue},
                statistic="Maximum",
                label=label,
                period=PERIOD,
            )

        self.dashboard.add_widgets(
            _graph("all streams: processed fps", [_search("ProcessedFps", "Average", "")], "frames/s", width=8),
            _graph("all streams: latency p95", [_search("LatencyMs", "p95", "")], "ms", width=8),
            _graph("all streams: drops and gaps", [_search("FramesDropped", "Sum", ""), _search("Gaps", "Sum", "")], "count", width=8),
        )
        self.dashboard.add_widgets(*event_widgets())
        self.dashboard.add_widgets(
            _graph(
                "results queue depth",
                [
                    sqs("ApproximateNumberOfMessagesVisible", queue_name, "waiting"),
                    sqs("ApproximateNumberOfMessagesNotVisible", queue_name, "in flight"),
                    sqs("ApproximateAgeOfOldestMessage", queue_name, "oldest (s)"),
                ],
                "messages",
                width=8,
            ),
            _graph(
                "dead-letter queue depth",
                [sqs("ApproximateNumberOfMessagesVisible", dead_letter_queue_name, "messages")],
                "messages",
                width=8,
            ),
            _graph("running worker tasks", running_tasks(cluster_name, services), "tasks", width=8),
        )
        self.dashboard.add_widgets(*fleet_widgets(env_name))
        output(cdk.Stack.of(self), "DashboardUrl", dashboard_url(name))


def event_widgets() -> list[cw.IWidget]:
    """What the streams' rules decided, every stream and every line and zone (SEARCH: those added later too)."""
    crossings = EVENT_METRICS["LineCrossings"][0]
    occupancy = EVENT_METRICS["ZoneOccupancy"][0]
    return [
        _graph("events per stream", [_search("Events", "Sum", "", ("Stream",))], "events", width=6),
        _graph("events per stream and type", [_search("Events", "Sum", "", ("Stream", "Type"))], "events", width=6),
        _graph("line crossings per direction", [_search("LineCrossings", "Sum", "", crossings)], "crossings", width=6),
        _graph("zone occupancy", [_search("ZoneOccupancy", "Maximum", "", occupancy)], "objects", width=6),
    ]


def _insights(metric: str, dimensions: dict[str, str], label: str) -> cw.Metric:
    return cw.Metric(
        namespace=INSIGHTS_NAMESPACE, metric_name=metric, dimensions_map=dimensions, statistic="Maximum", label=label, period=PERIOD
    )


def running_tasks(cluster_name: str, services: Mapping[str, str]) -> list[cw.IMetric]:
    """Running tasks of each service, and the one-off workers: the cluster's tasks less the services'.

    A service with no running task publishes no point, hence FILL(..., 0)."""
    per_service = {
        f"s{i}": _insights("RunningTaskCount", {"ClusterName": cluster_name, "ServiceName": name}, label)
        for i, (label, name) in enumerate(services.items())
    }
    tasks = _insights("TaskCount", {"ClusterName": cluster_name}, "all tasks")
    one_off = cw.MathExpression(
        expression=" - ".join(["FILL(tasks, 0)", *(f"FILL({ident}, 0)" for ident in per_service)]),
        using_metrics={"tasks": tasks, **per_service},
        label="one-off workers (run-task)",
        period=PERIOD,
    )
    return [*per_service.values(), one_off]


def fleet_widgets(env_name: str) -> list[cw.IWidget]:
    """Leases per fleet worker: each worker logs the leases it holds, so their spread shows the balance."""

    def fleet_metric(metric: str, statistic: str, label: str) -> cw.Metric:
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name=metric,
            dimensions_map={"Environment": env_name},
            statistic=statistic,
            label=label,
            period=PERIOD,
        )

    return [
        _graph(
            "fleet: leases per worker",
            [
                fleet_metric(LEASES_METRIC, "Maximum", "most"),
                fleet_metric(LEASES_METRIC, "Average", "mean"),
                fleet_metric(LEASES_METRIC, "Minimum", "fewest"),
            ],
            "streams",
            width=12,
        ),
        _graph("fleet: streams per worker (scaling metric)", [fleet_metric(SCALING_METRIC, "Average", "share")], "streams", width=12),
    ]

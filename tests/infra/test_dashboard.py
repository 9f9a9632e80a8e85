"""The CloudWatch dashboard: its widgets, the worker metrics they draw, and its URL as a stack output."""

from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest

from infra import naming
from infra.stacks import new_app
from infra.stacks.dashboard import STREAM_WIDGETS, WorkerDashboard
from worker import metrics

ENV = "test"
STREAM_METRICS = {
    "ProcessedFps",
    "InferenceMs",
    "InferenceMsMax",
    "LatencyMs",
    "MillisBehindNow",
    "DeliveryLagMs",
    "FramesDropped",
    "Gaps",
    "FramesGapped",
}


def body(template: dict, *, refs: bool = False) -> dict:
    """The dashboard body with every CloudFormation token replaced by "TOKEN", or with `refs` by the
    resource it names ("<LogicalId>" for a Ref, "<LogicalId.Attribute>" for a GetAtt)."""
    (resource,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    value = resource["Properties"]["DashboardBody"]
    if isinstance(value, dict):
        _, parts = value["Fn::Join"]
        value = "".join(p if isinstance(p, str) else _named(p) if refs else "TOKEN" for p in parts)
    return json.loads(value)


def _named(token: dict) -> str:
    if "Ref" in token:
        return f"<{token['Ref']}>"
    if "Fn::GetAtt" in token:
        return "<{}.{}>".format(*token["Fn::GetAtt"])
    return "TOKEN"


# What Container Insights publishes for ECS, by metric: its dimension sets ("Amazon ECS Container
# Insights metrics", CloudWatch User Guide). A widget drawing another combination draws nothing.
INSIGHTS_DIMENSIONS = {
    "RunningTaskCount": {("ClusterName", "ServiceName")},
    "DesiredTaskCount": {("ClusterName", "ServiceName")},
    "PendingTaskCount": {("ClusterName", "ServiceName")},
    "TaskCount": {("ClusterName",)},
    "ServiceCount": {("ClusterName",)},
}


def insights_rows(widget: dict) -> list[tuple[str, dict, dict]]:
    """(metric, {dimension: value}, options) of each Container Insights metric the widget draws or uses."""
    found = []
    for row in metric_rows(widget):
        if row[0] == "ECS/ContainerInsights":
            names = row[2:-1] if isinstance(row[-1], dict) else row[2:]
            found.append((row[1], dict(zip(names[::2], names[1::2])), row[-1] if isinstance(row[-1], dict) else {}))
    return found


def metric_rows(widget: dict) -> list[list]:
    return widget.get("properties", {}).get("metrics", [])


def stream_metrics(widgets: list[dict], stream: str) -> set[str]:
    """Metric names drawn with dimension Stream=`stream` (CloudWatch's compact form repeats `...` for the same ones)."""
    names = set()
    for widget in widgets:
        for row in metric_rows(widget):
            if row[:1] == [metrics.NAMESPACE] and "Stream" in row and row[row.index("Stream") + 1] == stream:
                names.add(row[1])
    return names


@pytest.fixture(scope="module")
def compute_template(synthesis) -> dict:
    return synthesis(ENV).templates[naming.stack_name(ENV, "compute")]


def test_the_metrics_it_draws_are_the_ones_the_worker_emits():
    emitted = set(metrics.COUNTERS) | set(metrics.TIMINGS) | {n + "Max" for n in metrics.TIMINGS} | set(metrics.GAUGES) | {"ProcessedFps"}
    assert emitted >= STREAM_METRICS


def test_one_row_of_graphs_per_stream_with_every_worker_figure(compute_template):
    widgets = body(compute_template)["widgets"]
    stream = naming.stream_name(ENV)
    assert stream_metrics(widgets, stream) == STREAM_METRICS
    titles = [w["properties"].get("title", "") for w in widgets]
    for figure in ("processed fps", "inference ms", "latency p50/p95", "lag behind live", "drops", "gaps"):
        assert f"{stream}: {figure}" in titles
    latency = next(w for w in widgets if w["properties"].get("title") == f"{stream}: latency p50/p95")
    assert [row[-1].get("stat") for row in metric_rows(latency)] == ["p50", "p95"]


def test_queue_dlq_running_tasks_and_streams_added_later(compute_template):
    widgets = body(compute_template)["widgets"]
    rows = [row for w in widgets for row in metric_rows(w)]
    sqs = {(row[1], tuple(row[2:4])) for row in rows if row[0] == "AWS/SQS"}
    assert ("ApproximateNumberOfMessagesVisible", ("QueueName", "TOKEN")) in sqs
    assert ("ApproximateNumberOfMessagesNotVisible", ("QueueName", "TOKEN")) in sqs
    dlq = next(w for w in widgets if w["properties"].get("title") == "dead-letter queue depth")
    assert metric_rows(dlq)[0][:3] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName"]
    searches = [row[0]["expression"] for row in rows if isinstance(row[0], dict)]
    assert f"SEARCH('{{{metrics.NAMESPACE},Stream}} MetricName=\"ProcessedFps\"', 'Average', 60)" in searches


def test_running_tasks_per_fleet_service_and_one_off_workers_on_metrics_container_insights_publishes(compute_template):
    widgets = body(compute_template, refs=True)["widgets"]
    running = next(w for w in widgets if w["properties"].get("title") == "running worker tasks")
    rows = insights_rows(running)
    for metric, dimensions, _ in rows:
        assert tuple(sorted(dimensions)) in INSIGHTS_DIMENSIONS[metric], (metric, dimensions)
    resources = compute_template["Resources"]
    (cluster_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::ECS::Cluster"]
    (service_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::ECS::Service"]
    assert [(m, d) for m, d, _ in rows] == [
        ("RunningTaskCount", {"ClusterName": f"<{cluster_id}>", "ServiceName": f"<{service_id}.Name>"}),
        ("TaskCount", {"ClusterName": f"<{cluster_id}>"}),
    ]
    assert [o.get("label") for _, _, o in rows] == ["fleet", "all tasks"]
    (expression,) = [row[0] for row in metric_rows(running) if isinstance(row[0], dict)]
    assert expression["expression"] == "FILL(tasks, 0) - FILL(s0, 0)"
    # Container Insights metrics exist only for a cluster that has it enabled.
    assert {"Name": "containerInsights", "Value": "enabled"} in resources[cluster_id]["Properties"]["ClusterSettings"]


def test_a_gpu_fleet_service_gets_its_own_running_line():
    app = new_app()
    stack = cdk.Stack(app, "Dash")
    services = {"fleet": "kinase-test-fleet", "fleet (GPU)": "kinase-test-fleet-gpu"}
    WorkerDashboard(stack, "D", env_name=ENV, streams=[], cluster_name="c", services=services, queue_name="q", dead_letter_queue_name="dlq")
    widgets = body(app.synth().get_stack_by_name("Dash").template)["widgets"]
    running = next(w for w in widgets if w["properties"].get("title") == "running worker tasks")
    rows = insights_rows(running)
    assert [(m, d.get("ServiceName"), o["label"]) for m, d, o in rows] == [
        ("RunningTaskCount", "kinase-test-fleet", "fleet"),
        ("RunningTaskCount", "kinase-test-fleet-gpu", "fleet (GPU)"),
        ("TaskCount", None, "all tasks"),
    ]
    (expression,) = [row[0] for row in metric_rows(running) if isinstance(row[0], dict)]
    assert expression["expression"] == "FILL(tasks, 0) - FILL(s0, 0) - FILL(s1, 0)"


def test_latency_percentiles_are_over_the_frame_latencies_the_worker_emits(compute_template):
    """The p95 the dashboard draws is CloudWatch's percentile of the values of LatencyMs, which the worker
    emits as every frame latency of its interval (an EMF array), not as a mean per interval."""
    import io

    out = io.StringIO()
    worker = metrics.Metrics("cam", out=out)
    for ms in (10.0, 20.0, 900.0):
        worker.time("LatencyMs", ms)
    assert worker.emit()["LatencyMs"] == [10.0, 20.0, 900.0]
    widgets = body(compute_template)["widgets"]
    stream = naming.stream_name(ENV)
    latency = next(w for w in widgets if w["properties"].get("title") == f"{stream}: latency p50/p95")
    assert [(row[1], row[-1].get("stat")) for row in metric_rows(latency)] == [("LatencyMs", "p50"), ("LatencyMs", "p95")]
    every = next(w for w in widgets if w["properties"].get("title") == "all streams: latency p95")
    (search,) = [row[0]["expression"] for row in metric_rows(every)]
    assert search == f"SEARCH('{{{metrics.NAMESPACE},Stream}} MetricName=\"LatencyMs\"', 'p95', 60)"


def test_its_url_is_a_compute_output_listed_by_the_cli(compute_template):
    assert naming.OUTPUTS["DashboardUrl"] == "compute"
    url = compute_template["Outputs"]["DashboardUrl"]["Value"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "<region>" for p in url)
    assert text == (
        f"https://<region>.console.aws.amazon.com/cloudwatch/home?region=<region>#dashboards/dashboard/{naming.dashboard_name(ENV)}"
    )
    (dashboard,) = [r for r in compute_template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert dashboard["Properties"]["DashboardName"] == naming.dashboard_name(ENV)


def test_every_stream_gets_its_own_row():
    app = new_app()
    stack = cdk.Stack(app, "Dash")
    streams = ["lobby-cam", "dock-cam", "yard-cam"]
    WorkerDashboard(
        stack, "D", env_name=ENV, streams=streams, cluster_name="c", services={"fleet": "s"}, queue_name="q", dead_letter_queue_name="dlq"
    )
    template = app.synth().get_stack_by_name("Dash").template
    widgets = body(template)["widgets"]
    for stream in streams:
        assert stream_metrics(widgets, stream) == STREAM_METRICS
        assert sum(w["properties"].get("title", "").startswith(f"{stream}: ") for w in widgets) == STREAM_WIDGETS


def test_leases_per_fleet_worker_from_the_metric_line_the_fleet_worker_logs(compute_template):
    import io

    from worker.fleet.main import emit_share

    class Coordinator:
        share = 2.0

        def streams(self):
            return ["a", "b"]

    line = io.StringIO()
    emit_share(Coordinator(), ENV, out=line)
    emitted = json.loads(line.getvalue())
    (declared,) = emitted["_aws"]["CloudWatchMetrics"]
    widgets = body(compute_template)["widgets"]
    leases = next(w for w in widgets if w["properties"].get("title") == "fleet: leases per worker")
    rows = metric_rows(leases)
    assert rows[0][:4] == [declared["Namespace"], "LeasedStreams", "Environment", ENV]
    assert [row[-1].get("stat", "Average") for row in rows] == ["Maximum", "Average", "Minimum"]  # Average is the default, left out
    assert {m["Name"] for m in declared["Metrics"]} >= {"LeasedStreams", "StreamsPerWorker"}
    assert declared["Dimensions"] == [["Environment"]] and emitted["Environment"] == ENV and emitted["LeasedStreams"] == 2


def test_events_row_draws_every_streams_events_crossings_and_occupancy(compute_template):
    """SEARCH matches a schema's exact dimension set: each graph's schema must be one the worker emits the metric with."""
    from infra.stacks.dashboard import EVENT_METRICS

    widgets = body(compute_template)["widgets"]
    drawn = {}
    for title in ("events per stream", "events per stream and type", "line crossings per direction", "zone occupancy"):
        widget = next(w for w in widgets if w["properties"].get("title") == title)
        (row,) = metric_rows(widget)
        drawn[title] = row[0]["expression"]
    assert drawn == {
        "events per stream": f"SEARCH('{{{metrics.NAMESPACE},Stream}} MetricName=\"Events\"', 'Sum', 60)",
        "events per stream and type": f"SEARCH('{{{metrics.NAMESPACE},Stream,Type}} MetricName=\"Events\"', 'Sum', 60)",
        "line crossings per direction": f"SEARCH('{{{metrics.NAMESPACE},Stream,Line,Direction}} MetricName=\"LineCrossings\"', 'Sum', 60)",
        "zone occupancy": f"SEARCH('{{{metrics.NAMESPACE},Stream,Zone}} MetricName=\"ZoneOccupancy\"', 'Maximum', 60)",
    }
    for expression in drawn.values():
        schema, metric = re.fullmatch(r"SEARCH\('\{[^,]+,([^}]+)\} MetricName=\"(\w+)\"'.*", expression).groups()
        assert tuple(schema.split(",")) in EVENT_METRICS[metric], expression
    events_row = [w for w in widgets if w["properties"].get("title") in drawn]
    assert {w["y"] for w in events_row} == {events_row[0]["y"]} and sum(w["width"] for w in events_row) == 24, "one full row"

"""`kinase cost`: the estimate's lines against a hand computation from the published prices."""

from __future__ import annotations

import io
import json

import pytest

from support.cli import assert_one_line_error, kinase

GB = 1024**3
MONTH_DAYS = 730 / 24
# us-east-1 list prices (the table in kinase_cli/aws/cost.py, from the AWS pricing pages).
VCPU_H, GB_H, IPV4_H, PUT, S3_GB_MONTH, SQS_REQ = 0.04048, 0.004445, 0.005, 0.005 / 1000, 0.023, 0.40 / 1e6
KVS_IN, KVS_OUT, KVS_GB_MONTH, LOGS_GB, LOGS_GB_MONTH, METRIC_MONTH = 0.0085, 0.0085, 0.023, 0.50, 0.03, 0.30
# DynamoDB on-demand (per write / read request unit), S3 GET, data transfer out to the internet, GetMetricData per metric.
DDB_WRITE, DDB_READ, GET, TRANSFER_GB, METRIC_REQUESTED = 0.625 / 1e6, 0.125 / 1e6, 0.0004 / 1000, 0.09, 0.01 / 1000


def _worker_metrics_lines(latencies: int) -> str:
    """What the worker writes for one interval that delivered `latencies` frames (each latency xxx.xxx ms)."""
    from worker.metrics import GAUGES, Metrics

    out = io.StringIO()
    metrics = Metrics("kinase-env-video", out=out)
    metrics.time("InferenceMs", 12.5)
    for _ in range(latencies):
        metrics.time("LatencyMs", 123.456)
    for name in GAUGES:  # every gauge the worker reports
        metrics.gauge(name, 1500.0)
    metrics.emit()
    return out.getvalue()


def _fleet_metrics_line() -> str:
    """The line each fleet worker logs every 10 s: its environment's scaling metric and leases, 4 streams held."""
    from worker.fleet.main import emit_share

    class Coordinator:
        share = 4.0

        def streams(self):
            return [f"kinase-env-video-{i}" for i in range(4)]

    out = io.StringIO()
    emit_share(Coordinator(), "kinase-env", out=out)
    assert len(json.loads(out.getvalue())["_aws"]["CloudWatchMetrics"][0]["Metrics"]) == 2
    return out.getvalue()


def _common_per_stream_hour(fps: float, workers: int, streams: int) -> dict[str, float]:
    """Lines the upload flags do not change: lease table, logs, metrics, Container Insights, IPv4.

    The fleet worker renews each lease and scans the whole table (consistently: 4 kB per read unit,
    1 kB items) every 5 s (a third of the 15 s lease); it checkpoints each 2 s fragment in the lease.
    The worker logs one metrics record every 10 s (360 an hour) carrying each frame latency, and
    ~600 kB of other lines an hour; each metric its EMF record defines is one custom metric for the
    stream. Each fleet worker adds its line of the environment's 2 fleet metrics every 10 s. Container Insights: 11 cluster, 13 service and 8 task family metrics; 120 kB of
    performance log events per task-hour.
    """
    text = _worker_metrics_lines(round(fps * 10))
    metric_count = len(json.loads(text.splitlines()[0])["_aws"]["CloudWatchMetrics"][0]["Metrics"])
    assert metric_count >= 17
    fleet_line = _fleet_metrics_line()
    log_gb = (360 * (len(text.encode()) + workers / streams * len(fleet_line.encode())) + 600_000) / GB
    scan_units = max(1, -(-streams * 1024 // 4096))
    return {
        "DynamoDB writes (checkpoints)": 1800 * DDB_WRITE,
        "DynamoDB writes (lease renewals)": 720 * DDB_WRITE,
        "DynamoDB reads (lease table scans)": workers * 720 * scan_units / streams * DDB_READ,
        "CloudWatch Logs (ingested, kept 14 days)": log_gb * (LOGS_GB + LOGS_GB_MONTH * 14 / MONTH_DAYS),
        "CloudWatch custom metrics": (metric_count + 2 / streams) / 730 * METRIC_MONTH,  # + StreamsPerWorker, LeasedStreams
        "Container Insights metrics": (11 + 13 + 8) / streams / 730 * METRIC_MONTH,
        "Container Insights performance logs": workers / streams * 120_000 / GB * LOGS_GB,
        "public IPv4 address": workers / streams * IPV4_H,
    }


def _workload_per_stream_hour(vcpu: float, memory_gb: float, puts: float, frame_bytes: float, messages: float, kvs_bytes: float) -> dict:
    """The lines the workload flags change: the task's size (its share per stream), frames uploaded and
    kept 14 days with an access log record of ~500 bytes each kept 90 days, SQS calls (send, receive,
    delete per message), and the stream's bytes into Kinesis Video, kept 24 h and read once."""
    return {
        "Fargate vCPU": vcpu * VCPU_H,
        "Fargate memory": memory_gb * GB_H,
        "S3 PUT (frames)": puts * PUT,
        "S3 storage (14 days)": puts * frame_bytes / GB * S3_GB_MONTH * 14 / MONTH_DAYS,
        "S3 access logs (90 days)": puts * 500 / GB * S3_GB_MONTH * 90 / MONTH_DAYS,
        "SQS requests (send, receive, delete)": 3 * messages * SQS_REQ,
        "Kinesis Video ingestion": kvs_bytes / GB * KVS_IN,
        "Kinesis Video storage (24 h)": kvs_bytes / GB * KVS_GB_MONTH * 24 / 730,
        "Kinesis Video GetMedia (consumed)": kvs_bytes / GB * KVS_OUT,
    }


CASES = [
    pytest.param(
        [],
        # 1 vCPU / 2 GB, one fleet worker; 10 frames/s all uploaded: 36,000 PUTs an hour; 60 kB each;
        # SQS batches of 1 + 10 x 0.1 = 2 messages; 1000 kbit/s = 450,000,000 bytes an hour.
        _workload_per_stream_hour(1, 2, 36_000, 60_000, 36_000 / 2, 450e6),
        (10, 1),
        1,
        24,
        id="defaults",
    ),
    pytest.param(
        ["--fps", "5", "--upload", "every:5", "--frame-kb", "40", "--bitrate-kbps", "2000"]
        + ["--cpu", "2048", "--memory", "4096", "--streams", "8", "--hours", "12", "--region", "us-east-2"],
        # 8 streams on 2 workers of 2 vCPU / 4 GB: a quarter task per stream; 18,000 frames an hour,
        # one in five uploaded: 3,600 PUTs of 40 kB; SQS batches of 1 + 5 x 0.1 = 1.5 messages;
        # 2000 kbit/s = 900,000,000 bytes an hour.
        _workload_per_stream_hour(2 / 4, 4 / 4, 3_600, 40_000, 18_000 / 1.5, 900e6),
        (5, 2),
        8,
        12,
        id="8-streams-on-2-workers-12h-every-5th-frame",
    ),
]


@pytest.mark.parametrize(("args", "expected", "fleet", "streams", "hours"), CASES)
def test_cost_json_matches_a_hand_computation(args, expected, fleet, streams, hours):
    proc = kinase("cost", "--json", *args, check=True)
    envelope = json.loads(proc.stdout)
    assert envelope["command"] == "cost"
    data = envelope["data"]
    assert data["estimate"] is True and data["prices_as_of"] and "https://aws.amazon.com/" in data["prices_source"]
    fps, workers = fleet
    assert (data["workers"], data["streams_per_worker"], data["fleet"], data["save"], data["web"]) == (workers, 4, True, False, False)
    expected = {**expected, **_common_per_stream_hour(fps, workers, streams)}
    got = {line["item"]: line["usd_per_stream_hour"] for line in data["lines"]}
    assert got.keys() == expected.keys()
    for item, usd in expected.items():
        assert got[item] == pytest.approx(usd, abs=2e-6), item
    per_hour = sum(expected.values())
    assert data["usd_per_stream_hour"] == pytest.approx(per_hour, abs=1e-5)
    assert data["usd_per_day"] == pytest.approx(per_hour * streams * hours, abs=1e-4)
    assert data["usd_per_month"] == pytest.approx(per_hour * streams * hours * MONTH_DAYS, abs=1e-3)
    assert (data["streams"], data["hours_per_day"]) == (streams, hours)


def test_uploading_every_frame_costs_more_than_the_task():
    """The design's figure: at 10 frames/s the PUTs are about $4.3 a day, the 1 vCPU / 2 GB task about $1.2."""
    lines = {line["item"]: line["usd_per_day"] for line in json.loads(kinase("cost", "--json", check=True).stdout)["data"]["lines"]}
    assert lines["S3 PUT (frames)"] == pytest.approx(4.32)
    assert lines["Fargate vCPU"] + lines["Fargate memory"] == pytest.approx(1.18488)
    none = json.loads(kinase("cost", "--json", "--upload", "none", check=True).stdout)["data"]["lines"]
    assert {line["item"]: line["usd_per_day"] for line in none}["S3 PUT (frames)"] == 0


def test_a_region_without_a_table_is_priced_as_us_east_1_and_says_so():
    data = json.loads(kinase("cost", "--json", "--region", "ap-south-1", check=True).stdout)["data"]
    assert (data["region"], data["priced_region"]) == ("ap-south-1", "us-east-1")
    assert "priced as us-east-1" in kinase("cost", "--region", "ap-south-1", check=True).stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cpu", "256", "--memory", "1536"], "memory 1536 MiB is not valid with cpu 256 (512, 1024, 2048)"),
        (["--cpu", "1000"], "cpu 1000 is not a Fargate size"),
        (["--upload", "every:0"], "upload policy 'every:0'"),
        (["--upload", "some"], "upload policy 'some'"),
    ],
)
def test_invalid_sizes_and_policies_are_one_line_errors(args, fragment):
    assert_one_line_error(kinase("cost", *args), fragment)


def test_sqs_batching_assumption_is_the_workers():
    from kinase_cli.aws import cost
    from worker.sinks import sqs_results as sinks

    assert (cost.SQS_BATCH_SIZE, cost.SQS_BATCH_WAIT) == (sinks.BATCH_SIZE, sinks.BATCH_WAIT)


def _day(*args: str) -> dict:
    data = json.loads(kinase("cost", "--json", *args, check=True).stdout)["data"]
    return {"data": data, "lines": {line["item"]: line["usd_per_day"] for line in data["lines"]}}


def test_the_fleet_is_priced_as_it_packs_streams():
    """9 streams at the fleet's 4 streams per worker run on ceil(9 / 4) = 3 tasks, not 9."""
    packed = _day("--streams", "9")
    assert (packed["data"]["workers"], packed["data"]["streams_per_worker"]) == (3, 4)
    assert packed["lines"]["Fargate vCPU"] == pytest.approx(3 * 24 * VCPU_H, abs=1e-3)
    assert packed["lines"]["Fargate memory"] == pytest.approx(3 * 2 * 24 * GB_H, abs=1e-3)
    assert packed["lines"]["public IPv4 address"] == pytest.approx(3 * 24 * IPV4_H, abs=1e-3)
    # Each of the 3 workers scans the 9 leases (9 kB: 3 read units) every 5 s.
    assert packed["lines"]["DynamoDB reads (lease table scans)"] == pytest.approx(3 * 720 * 3 * 24 * DDB_READ, abs=1e-5)
    alone = _day("--streams", "9", "--streams-per-worker", "1")
    assert alone["data"]["workers"] == 9
    assert alone["lines"]["Fargate vCPU"] == pytest.approx(9 * 24 * VCPU_H, abs=1e-3)
    assert alone["data"]["usd_per_day"] > packed["data"]["usd_per_day"]
    assert "on 3 worker task(s)" in kinase("cost", "--streams", "9", check=True).stdout


def test_dynamodb_access_logs_and_container_insights_are_lines():
    lines = _day()["lines"]
    assert lines["DynamoDB writes (checkpoints)"] == pytest.approx(1800 * 24 * DDB_WRITE, abs=1e-5)
    assert lines["DynamoDB writes (lease renewals)"] == pytest.approx(720 * 24 * DDB_WRITE, abs=1e-5)
    assert lines["S3 access logs (90 days)"] == pytest.approx(36_000 * 24 * 500 / GB * S3_GB_MONTH * 90 / MONTH_DAYS, abs=1e-4)
    assert lines["Container Insights metrics"] == pytest.approx(32 * 24 / 730 * METRIC_MONTH, abs=1e-4)
    assert "S3 PUT (checkpoints)" not in lines  # the fleet checkpoints in its lease, not in S3


@pytest.mark.parametrize(
    ("flags", "who"), [(["--save"], ["watch --save"]), (["--web"], ["web view"]), (["--save", "--web"], ["watch --save", "web view"])]
)
def test_save_and_web_add_the_frames_they_download(flags, who):
    """Every uploaded frame (36,000 an hour of 60 kB) leaves AWS once per consumer that downloads it."""
    base = _day()
    used = _day(*flags)
    assert (used["data"]["save"], used["data"]["web"]) == ("watch --save" in who, "web view" in who)
    added = {item: usd for item, usd in used["lines"].items() if item not in base["lines"]}
    expected = {}
    for name in who:
        expected[f"data transfer out ({name})"] = 36_000 * 24 * 60_000 / GB * TRANSFER_GB
        expected[f"S3 GET ({name})"] = 36_000 * 24 * GET
    if "web view" in who:  # 3 figures per stream a minute (kinase_cli/web/metrics.py)
        expected["CloudWatch GetMetricData (web view)"] = 3 * 60 * 24 * METRIC_REQUESTED
    assert added.keys() == expected.keys()
    for item, usd in expected.items():
        assert added[item] == pytest.approx(usd, abs=1e-4), item
    # Their GETs are requests to the frames bucket too: each leaves an access log record.
    assert used["lines"]["S3 access logs (90 days)"] == pytest.approx(base["lines"]["S3 access logs (90 days)"] * (1 + len(who)), abs=1e-4)


def test_assumptions_are_the_stacks_and_the_workers():
    from infra.stacks import storage
    from kinase_cli.aws import cost
    from kinase_cli.web import metrics as web_metrics
    from worker.fleet.leases import DEFAULT_LEASE_DURATION_S
    from worker.settings import BY_FIELD

    assert cost.ACCESS_LOGS_EXPIRE_DAYS == storage.ACCESS_LOGS_EXPIRE_DAYS
    assert float(BY_FIELD["lease_duration"].default) == DEFAULT_LEASE_DURATION_S == 15
    assert float(BY_FIELD["metrics_interval"].default) == 10  # the hand computations' 360 metrics records an hour
    assert (len(web_metrics.FIGURES), web_metrics.EVERY_S) == (3, 60)

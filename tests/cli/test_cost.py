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


def _worker_metrics_line() -> str:
    from worker.metrics import Metrics

    out = io.StringIO()
    metrics = Metrics("kinase-env-video", out=out)
    metrics.time("InferenceMs", 12.5)
    metrics.time("LatencyMs", 12.5)
    metrics.gauge("MillisBehindNow", 1500.0)
    metrics.emit()
    return out.getvalue()


def _common_per_stream_hour() -> dict[str, float]:
    """Lines that do not depend on the workload flags: checkpoints (one per 2 s fragment), logs, metrics.

    The worker logs one metrics line every 10 s (360 an hour) and ~600 kB of other lines an hour;
    each metric its EMF line defines is one custom metric for the stream.
    """
    line = _worker_metrics_line()
    metric_count = len(json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Metrics"])
    assert metric_count >= 17
    log_gb = (360 * len(line.encode()) + 600_000) / GB
    return {
        "S3 PUT (checkpoints)": 1800 * PUT,
        "CloudWatch Logs (ingested, kept 14 days)": log_gb * (LOGS_GB + LOGS_GB_MONTH * 14 / MONTH_DAYS),
        "CloudWatch custom metrics": metric_count / 730 * METRIC_MONTH,
        "public IPv4 address": IPV4_H,
    }


def _workload_per_stream_hour(vcpu: float, memory_gb: float, puts: float, frame_bytes: float, messages: float, kvs_bytes: float) -> dict:
    """The lines the workload flags change: the task's size, frames uploaded and kept 14 days, SQS calls
    (send, receive, delete per message), and the stream's bytes into Kinesis Video, kept 24 h and read once."""
    return {
        "Fargate vCPU": vcpu * VCPU_H,
        "Fargate memory": memory_gb * GB_H,
        "S3 PUT (frames)": puts * PUT,
        "S3 storage (14 days)": puts * frame_bytes / GB * S3_GB_MONTH * 14 / MONTH_DAYS,
        "SQS requests (send, receive, delete)": 3 * messages * SQS_REQ,
        "Kinesis Video ingestion": kvs_bytes / GB * KVS_IN,
        "Kinesis Video storage (24 h)": kvs_bytes / GB * KVS_GB_MONTH * 24 / 730,
        "Kinesis Video GetMedia (consumed)": kvs_bytes / GB * KVS_OUT,
    }


CASES = [
    pytest.param(
        [],
        # 1 vCPU / 2 GB; 10 frames/s all uploaded: 36,000 PUTs an hour; 60 kB each;
        # SQS batches of 1 + 10 x 0.1 = 2 messages; 1000 kbit/s = 450,000,000 bytes an hour.
        _workload_per_stream_hour(1, 2, 36_000, 60_000, 36_000 / 2, 450e6),
        1,
        24,
        id="defaults",
    ),
    pytest.param(
        ["--fps", "5", "--upload", "every:5", "--frame-kb", "40", "--bitrate-kbps", "2000"]
        + ["--cpu", "2048", "--memory", "4096", "--streams", "8", "--hours", "12", "--region", "us-east-2"],
        # 2 vCPU / 4 GB; 18,000 frames an hour, one in five uploaded: 3,600 PUTs of 40 kB;
        # SQS batches of 1 + 5 x 0.1 = 1.5 messages; 2000 kbit/s = 900,000,000 bytes an hour.
        _workload_per_stream_hour(2, 4, 3_600, 40_000, 18_000 / 1.5, 900e6),
        8,
        12,
        id="8-streams-12h-every-5th-frame",
    ),
]


@pytest.mark.parametrize(("args", "expected", "streams", "hours"), CASES)
def test_cost_json_matches_a_hand_computation(args, expected, streams, hours):
    proc = kinase("cost", "--json", *args, check=True)
    envelope = json.loads(proc.stdout)
    assert envelope["command"] == "cost"
    data = envelope["data"]
    assert data["estimate"] is True and data["prices_as_of"] and "https://aws.amazon.com/" in data["prices_source"]
    expected = {**expected, **_common_per_stream_hour()}
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

"""An ESTIMATE of what an environment costs, from dated price tables kept in code.

Not a bill: on-demand list prices, no free tier, no Savings Plans or Spot, no tax. Streams run on
the fleet as it packs them: ceil(streams / streams per worker) Fargate tasks (the fleet's scaling
target, `naming.FLEET_STREAMS_PER_WORKER`), each billed for its requested vCPU and memory and its
public IPv4 address; or, for one-off workers (`running`), one task per stream. A stream costs one
S3 PUT per uploaded frame, that frame's storage until the lifecycle rule expires it and the access
log record of each request to the frames bucket, the SQS requests that carry one message per
processed frame (in batches), Kinesis Video ingestion, storage and consumption (GetMedia), its
checkpoints and lease renewals (DynamoDB on-demand writes, and each worker's consistent scans of
the lease table; S3 PUTs for a one-off worker), the worker's CloudWatch Logs and embedded metrics,
and its share of Container Insights (enabled on the cluster: its metrics are custom metrics).
`kinase watch --save` and the web view download frames: internet data transfer and S3 GETs.
At 10 frames/s with every frame uploaded the S3 PUTs alone are about $4.3 a day, more than the
1 vCPU / 2 GB task (about $1.2): the upload policy (`--upload`, the worker's KINASE_UPLOAD) is the
biggest lever.

Not counted: VPC flow logs, GPU instances, message bodies `kinase watch` receives over the
internet, the lease table's storage and backups (kilobytes), the free tier. Update a table's
`as_of` when you touch it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cache

from infra import naming

FALLBACK_REGION = "us-east-1"
HOURS_PER_MONTH = 730  # AWS's own convention for monthly figures
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
GB = 1024**3

# Workload defaults, each an assumption the `kinase cost` flags can change.
DEFAULT_FPS = 10.0
DEFAULT_FRAME_KB = 60.0  # a 640x480 annotated JPEG at quality 85
DEFAULT_BITRATE_KBPS = 1000.0  # the camera's H.264 stream into Kinesis Video
FRAGMENT_SECONDS = 2.0  # a camera's usual keyframe interval: one Kinesis Video fragment, one checkpoint PUT
LOG_BYTES_PER_HOUR = 600_000  # the worker's log lines besides its metrics (start-up, warnings, summaries)
# The worker's SQS batching (worker/sinks/sqs_results.py BATCH_SIZE, BATCH_WAIT; a test keeps them equal).
SQS_BATCH_SIZE = 10
SQS_BATCH_WAIT = 0.1
LEASE_ITEM_BYTES = 1024  # a lease item with its checkpoint: one write request unit (1 KB) per write
READ_UNIT_BYTES = 4096  # a strongly consistent read request unit reads up to 4 KB (the fleet scans consistently)
ACCESS_LOG_RECORD_BYTES = 500  # one S3 server access log record (one request to the frames bucket)
ACCESS_LOGS_EXPIRE_DAYS = 90  # infra/stacks/storage.py's lifecycle rule (a test keeps them equal)
# Container Insights (enabled on the cluster) publishes custom metrics per dimension set: the page
# "Amazon ECS Container Insights metrics" (CloudWatch User Guide) lists 11 with {ClusterName}, 13 with
# {ServiceName, ClusterName} and 8 with {TaskDefinitionFamily, ClusterName}.
INSIGHTS_CLUSTER_METRICS = 11
INSIGHTS_SERVICE_METRICS = 13
INSIGHTS_FAMILY_METRICS = 8
# ...and performance log events: one Task and one Container event per task a minute, about 1 kB each
# ("Container Insights performance log events for Amazon ECS").
INSIGHTS_LOG_BYTES_PER_TASK_HOUR = 2 * 60 * 1000
LATENCY_SAMPLE_MS = 123.456  # a frame latency as the worker's metrics line writes it (3 decimals)


@dataclass(frozen=True)
class Prices:
    """On-demand USD list prices of one region, as of `as_of`, from `source`."""

    as_of: str
    source: str
    fargate_vcpu_hour: float
    fargate_gb_hour: float
    s3_put_per_1000: float
    s3_gb_month: float
    sqs_per_million: float
    kvs_ingest_gb: float
    kvs_consume_gb: float
    kvs_gb_month: float
    ipv4_hour: float
    logs_ingest_gb: float
    logs_gb_month: float
    metric_month: float
    ddb_write_per_million: float  # on-demand write request units
    ddb_read_per_million: float  # on-demand read request units
    s3_get_per_1000: float
    transfer_out_gb: float  # data transfer out to the internet (first 10 TB a month)
    metrics_requested_per_1000: float  # GetMetricData, per 1,000 metrics requested


_US = Prices(
    as_of="2025-06",
    source=(
        "https://aws.amazon.com/fargate/pricing/ https://aws.amazon.com/s3/pricing/ https://aws.amazon.com/sqs/pricing/ "
        "https://aws.amazon.com/kinesis/video-streams/pricing/ https://aws.amazon.com/vpc/pricing/ (public IPv4) "
        "https://aws.amazon.com/cloudwatch/pricing/ https://aws.amazon.com/dynamodb/pricing/on-demand/ "
        "https://aws.amazon.com/ec2/pricing/on-demand/ (data transfer)"
    ),
    fargate_vcpu_hour=0.04048,
    fargate_gb_hour=0.004445,
    s3_put_per_1000=0.005,
    s3_gb_month=0.023,
    sqs_per_million=0.40,
    kvs_ingest_gb=0.0085,
    kvs_consume_gb=0.0085,
    kvs_gb_month=0.023,
    ipv4_hour=0.005,
    logs_ingest_gb=0.50,
    logs_gb_month=0.03,
    metric_month=0.30,
    ddb_write_per_million=0.625,
    ddb_read_per_million=0.125,
    s3_get_per_1000=0.0004,
    transfer_out_gb=0.09,
    metrics_requested_per_1000=0.01,
)

# region -> its table. Regions not here are priced as FALLBACK_REGION, and every estimate says so.
PRICES: dict[str, Prices] = {"us-east-1": _US, "us-east-2": _US, "us-west-2": _US}
PRICES_AS_OF = max(p.as_of for p in PRICES.values())

# Task-level cpu units -> allowed memory MiB (Fargate's valid combinations; 256 CPU: 512, 1024 or 2048 only).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}


def prices_for(region: str) -> tuple[Prices, str]:
    """The region's table and the region it is for (FALLBACK_REGION when the region has none)."""
    priced = region if region in PRICES else FALLBACK_REGION
    return PRICES[priced], priced


def invalid_size(cpu_units: int, memory_mib: int) -> str | None:
    """Why Fargate would reject this cpu/memory pair; None when it is valid."""
    if cpu_units not in FARGATE_SIZES:
        return f"cpu {cpu_units} is not a Fargate size (one of {', '.join(map(str, FARGATE_SIZES))})"
    allowed = FARGATE_SIZES[cpu_units]
    if memory_mib not in allowed:
        steps = {b - a for a, b in zip(allowed, allowed[1:])}
        shape = f"from {allowed[0]} to {allowed[-1]} MiB in steps of {steps.pop()}" if len(steps) == 1 else ", ".join(map(str, allowed))
        return f"memory {memory_mib} MiB is not valid with cpu {cpu_units} ({shape})"
    return None


def upload_share(policy: str, detected_share: float = 1.0) -> float:
    """The share of processed frames a KINASE_UPLOAD policy puts in S3 (parsed by the worker's own parser)."""
    from worker.upload import parse

    try:
        chosen = parse(policy)
    except ValueError as exc:
        raise ValueError(f"upload policy {policy!r} is not valid: it {exc}") from None
    if chosen.mode == "every":
        return 1.0 / chosen.every
    return {"all": 1.0, "none": 0.0, "detections": detected_share}[chosen.mode]


@dataclass(frozen=True)
class Workload:
    """What one stream asks of AWS; every field is an assumption the `kinase cost` flags can change."""

    fps: float = DEFAULT_FPS  # frames processed per second (after sampling)
    upload: str = "all"
    detected_share: float = 1.0  # for upload=detections: share of frames with a detection
    frame_kb: float = DEFAULT_FRAME_KB
    bitrate_kbps: float = DEFAULT_BITRATE_KBPS
    cpu: int = naming.TASK_CPU
    memory: int = naming.TASK_MEMORY_MIB
    streams_per_worker: int = naming.FLEET_STREAMS_PER_WORKER  # how the fleet packs streams (its scaling target)
    frames_expire_days: int = naming.FRAMES_EXPIRE_DAYS
    stream_retention_hours: int = naming.STREAM_RETENTION_HOURS
    log_retention_days: int = naming.LOG_RETENTION_DAYS


@dataclass(frozen=True)
class Line:
    item: str
    quantity: float  # per stream-hour
    unit: str
    unit_usd: float
    usd_per_stream_hour: float


@dataclass(frozen=True)
class Estimate:
    region: str
    priced_region: str
    prices: Prices
    workload: Workload
    streams: int
    hours_per_day: float
    workers: int  # Fargate tasks the streams run on
    fleet: bool  # packed on fleet workers (leases in DynamoDB); False: one-off workers, one task per stream
    save: bool = False  # `kinase watch --save` downloads every uploaded frame
    web: bool = False  # the web view (`watch --web`) downloads the frames it shows
    lines: list[Line] = field(default_factory=list)

    @property
    def usd_per_stream_hour(self) -> float:
        return sum(line.usd_per_stream_hour for line in self.lines)

    @property
    def usd_per_day(self) -> float:
        return self.usd_per_stream_hour * self.streams * self.hours_per_day

    @property
    def usd_per_month(self) -> float:
        return self.usd_per_day * DAYS_PER_MONTH

    def as_dict(self) -> dict:
        return {
            "estimate": True,
            "region": self.region,
            "priced_region": self.priced_region,
            "prices_as_of": self.prices.as_of,
            "prices_source": self.prices.source,
            "streams": self.streams,
            "hours_per_day": self.hours_per_day,
            "workers": self.workers,
            "fleet": self.fleet,
            "streams_per_worker": self.workload.streams_per_worker if self.fleet else 1,
            "save": self.save,
            "web": self.web,
            "workload": {
                "fps": self.workload.fps,
                "upload": self.workload.upload,
                "detected_share": self.workload.detected_share,
                "frame_kb": self.workload.frame_kb,
                "bitrate_kbps": self.workload.bitrate_kbps,
                "cpu": self.workload.cpu,
                "memory": self.workload.memory,
            },
            "usd_per_stream_hour": _round(self.usd_per_stream_hour),
            "usd_per_day": _round(self.usd_per_day),
            "usd_per_month": _round(self.usd_per_month),
            "lines": [
                {
                    "item": line.item,
                    "quantity_per_stream_hour": _round(line.quantity),
                    "unit": line.unit,
                    "unit_usd": line.unit_usd,
                    "usd_per_stream_hour": _round(line.usd_per_stream_hour),
                    "usd_per_day": _round(line.usd_per_stream_hour * self.streams * self.hours_per_day),
                }
                for line in self.lines
            ],
        }

    def where(self) -> str:
        return self.region if self.priced_region == self.region else f"{self.region}, priced as {self.priced_region}"

    def text(self) -> str:
        """One line: the figure a command shows before it asks or after it starts something."""
        return (
            f"~${self.usd_per_stream_hour:.3f} per stream-hour, ~${self.usd_per_day:.2f}/day, ~${self.usd_per_month:.0f}/month "
            f"for {self.streams} stream(s) on {self.workers} worker task(s) x {self.hours_per_day:g} h/day at {self.workload.fps:g} frames/s, upload={self.workload.upload} "
            f"(ESTIMATE, {self.where()}, prices as of {self.prices.as_of}; `kinase cost` shows the lines)"
        )


def _round(value: float) -> float:
    return round(value, 6)


@cache
def worker_metrics(frames_per_interval: int = 1) -> tuple[int, int]:
    """(custom metrics per stream, bytes of metrics lines per interval) of the worker's EMF record with every field set.

    Each metric the record defines is one CloudWatch custom metric per Stream dimension value. The
    record carries each frame latency of its interval (further lines past EMF_MAX_VALUES), so its
    size grows with the frames an interval delivers.
    """
    import io

    from worker.metrics import GAUGES, Metrics

    out = io.StringIO()
    metrics = Metrics("kinase-env-video", out=out)
    metrics.time("InferenceMs", 12.5)
    for _ in range(max(frames_per_interval, 1)):
        metrics.time("LatencyMs", LATENCY_SAMPLE_MS)
    for name in GAUGES:
        metrics.gauge(name, 1500.0)
    record = metrics.emit()
    return sum(len(d["Metrics"]) for d in record["_aws"]["CloudWatchMetrics"]), len(out.getvalue().encode())


@cache
def fleet_metrics() -> tuple[int, int]:
    """(custom metrics per environment, bytes per line) of the line each fleet worker logs every interval:
    the fleet's scaling metric and its leases (worker/fleet/main.py `emit_share`, dimension Environment)."""
    import io

    from worker.fleet.main import emit_share

    class Coordinator:
        share = float(naming.FLEET_STREAMS_PER_WORKER)

        def streams(self) -> list[str]:
            return [f"kinase-env-video-{i}" for i in range(naming.FLEET_STREAMS_PER_WORKER)]

    out = io.StringIO()
    emit_share(Coordinator(), "kinase-env", out=out)
    record = json.loads(out.getvalue())
    return sum(len(d["Metrics"]) for d in record["_aws"]["CloudWatchMetrics"]), len(out.getvalue().encode())


def _worker_default(field: str) -> float:
    """A worker setting's default (worker/settings.py), which the stacks' task definitions keep."""
    from worker.settings import BY_FIELD

    return float(BY_FIELD[field].default)


def _lease_cycles_per_hour() -> float:
    """A fleet worker's lease cycles an hour (worker/fleet/leases.py): every third of the lease duration,
    each renewing every lease the worker holds and scanning the whole table once."""
    return 3600 / (_worker_default("lease_duration") / 3)


def _web_metrics_per_hour() -> float:
    """Metrics the web view asks CloudWatch for per stream an hour (kinase_cli/web/metrics.py)."""
    from kinase_cli.web.metrics import EVERY_S, FIGURES

    return len(FIGURES) * 3600 / EVERY_S


def estimate(
    region: str,
    workload: Workload | None = None,
    *,
    streams: int = 1,
    hours_per_day: float = 24.0,
    fleet: bool = True,
    save: bool = False,
    web: bool = False,
) -> Estimate:
    """The cost of `streams` streams running `hours_per_day` hours a day, on the fleet as it packs them
    (ceil(streams / streams_per_worker) tasks) or, with fleet=False, on one-off workers (a task each).

    Every line is per stream-hour: what the environment costs an hour while the streams run, divided
    by the streams (by 1 when there are none, so the figures stay those of one stream).
    """
    w = workload or Workload()
    problem = invalid_size(w.cpu, w.memory)
    if problem:
        raise ValueError(problem)
    p, priced = prices_for(region)
    n = max(streams, 1)
    workers = math.ceil(n / w.streams_per_worker) if fleet else n
    share = workers / n  # worker tasks per stream
    frames = w.fps * 3600
    uploaded = frames * upload_share(w.upload, w.detected_share)
    frame_gb = w.frame_kb * 1000 / GB
    video_gb = w.bitrate_kbps * 1000 / 8 * 3600 / GB
    batch = min(SQS_BATCH_SIZE, 1 + w.fps * SQS_BATCH_WAIT)  # messages per SendMessageBatch at this rate
    metrics_interval = _worker_default("metrics_interval")  # seconds between the worker's metrics lines
    metric_count, metrics_bytes = worker_metrics(round(w.fps * metrics_interval))
    fleet_count, fleet_bytes = fleet_metrics() if fleet else (0, 0)
    log_gb = (3600 / metrics_interval * (metrics_bytes + share * fleet_bytes) + LOG_BYTES_PER_HOUR) / GB
    fragments = 3600 / FRAGMENT_SECONDS  # one checkpoint per fragment
    downloads = uploaded * (int(save) + int(web))  # S3 GETs of frames by watch --save and the web view
    insights_metrics = INSIGHTS_CLUSTER_METRICS + INSIGHTS_FAMILY_METRICS + (INSIGHTS_SERVICE_METRICS if fleet else 0)

    def line(item: str, quantity: float, unit: str, unit_usd: float) -> Line:
        return Line(item, quantity, unit, unit_usd, quantity * unit_usd)

    lines = [
        line("Fargate vCPU", share * w.cpu / 1024, "vCPU-hour", p.fargate_vcpu_hour),
        line("Fargate memory", share * w.memory / 1024, "GB-hour", p.fargate_gb_hour),
        line("public IPv4 address", share, "IP-hour", p.ipv4_hour),
        line("S3 PUT (frames)", uploaded, "request", p.s3_put_per_1000 / 1000),
    ]
    if fleet:
        scans = workers * _lease_cycles_per_hour()
        scan_units = max(1, math.ceil(n * LEASE_ITEM_BYTES / READ_UNIT_BYTES))
        lines += [
            line("DynamoDB writes (checkpoints)", fragments, "write unit", p.ddb_write_per_million / 1e6),
            line("DynamoDB writes (lease renewals)", _lease_cycles_per_hour(), "write unit", p.ddb_write_per_million / 1e6),
            line("DynamoDB reads (lease table scans)", scans * scan_units / n, "read unit", p.ddb_read_per_million / 1e6),
        ]
    else:
        lines.append(line("S3 PUT (checkpoints)", fragments, "request", p.s3_put_per_1000 / 1000))
    bucket_requests = uploaded + downloads + (0 if fleet else fragments)
    lines += [
        line(f"S3 storage ({w.frames_expire_days} days)", uploaded * frame_gb, "GB", p.s3_gb_month * w.frames_expire_days / DAYS_PER_MONTH),
        line(
            f"S3 access logs ({ACCESS_LOGS_EXPIRE_DAYS} days)",
            bucket_requests * ACCESS_LOG_RECORD_BYTES / GB,
            "GB",
            p.s3_gb_month * ACCESS_LOGS_EXPIRE_DAYS / DAYS_PER_MONTH,
        ),
        line("SQS requests (send, receive, delete)", 3 * frames / batch, "request", p.sqs_per_million / 1e6),
        line("Kinesis Video ingestion", video_gb, "GB", p.kvs_ingest_gb),
        line(
            f"Kinesis Video storage ({w.stream_retention_hours} h)",
            video_gb,
            "GB",
            p.kvs_gb_month * w.stream_retention_hours / HOURS_PER_MONTH,
        ),
        line("Kinesis Video GetMedia (consumed)", video_gb, "GB", p.kvs_consume_gb),
        line(
            f"CloudWatch Logs (ingested, kept {w.log_retention_days} days)",
            log_gb,
            "GB",
            p.logs_ingest_gb + p.logs_gb_month * w.log_retention_days / DAYS_PER_MONTH,
        ),
        line("CloudWatch custom metrics", (metric_count + fleet_count / n) / HOURS_PER_MONTH, "metric-month", p.metric_month),
        line("Container Insights metrics", insights_metrics / n / HOURS_PER_MONTH, "metric-month", p.metric_month),
        line("Container Insights performance logs", share * INSIGHTS_LOG_BYTES_PER_TASK_HOUR / GB, "GB", p.logs_ingest_gb),
    ]
    for used, who in ((save, "watch --save"), (web, "web view")):
        if used:
            lines += [
                line(f"S3 GET ({who})", uploaded, "request", p.s3_get_per_1000 / 1000),
                line(f"data transfer out ({who})", uploaded * frame_gb, "GB", p.transfer_out_gb),
            ]
    if web:
        lines.append(line("CloudWatch GetMetricData (web view)", _web_metrics_per_hour(), "metric", p.metrics_requested_per_1000 / 1000))
    running = math.ceil(streams / w.streams_per_worker) if fleet else streams
    return Estimate(region, priced, p, w, streams, hours_per_day, workers=running, fleet=fleet, save=save, web=web, lines=lines)


def fargate_hourly(cpu_units: int, memory_mib: int, region: str, count: int = 1) -> FargateHourly:
    """Estimated USD per hour for `count` tasks of `cpu_units` (1024 = 1 vCPU) and `memory_mib`: the task alone."""
    p, priced = prices_for(region)
    hourly = (cpu_units / 1024 * p.fargate_vcpu_hour + memory_mib / 1024 * p.fargate_gb_hour) * count
    return FargateHourly(round(hourly, 6), region, priced, p.as_of)


@dataclass(frozen=True)
class FargateHourly:
    usd_per_hour: float
    region: str
    priced_region: str
    prices_as_of: str
    estimate: bool = True

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        where = self.region if self.priced_region == self.region else f"{self.region}, priced as {self.priced_region}"
        return f"~${self.usd_per_hour:.4f}/h (estimate, Fargate on-demand Linux/x86, {where}, prices as of {self.prices_as_of})"


def running(region: str, tasks: list[dict], workload: Workload | None = None) -> Estimate:
    """The estimate for what is running: one stream per task (one-off workers), sized as each task is, 24 h a day.

    Tasks of different sizes are averaged into one workload: the figure is per the tasks counted.
    """
    w = workload or Workload()
    sized = [(int(t["cpu"]), int(t["memory"])) for t in tasks if t.get("cpu") and t.get("memory")]
    if not sized:
        return estimate(region, w, streams=0, fleet=False)
    cpu = math.fsum(c for c, _ in sized) / len(sized)
    memory = math.fsum(m for _, m in sized) / len(sized)
    base = estimate(region, w, streams=len(sized), fleet=False)
    scaled = [
        replace(line, quantity=cpu / 1024, usd_per_stream_hour=cpu / 1024 * line.unit_usd)
        if line.item == "Fargate vCPU"
        else replace(line, quantity=memory / 1024, usd_per_stream_hour=memory / 1024 * line.unit_usd)
        if line.item == "Fargate memory"
        else line
        for line in base.lines
    ]
    return replace(base, lines=scaled)

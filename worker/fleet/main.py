"""A fleet worker: `python -m worker.fleet` reads the streams whose leases it holds, not one fixed stream.

The lease coordinator (worker/fleet/leases.py) decides which streams this process reads; for each one
`StreamPipelines` runs the one-stream worker (worker/pipeline.py) on its own thread, with its own
reader, live policy, metrics (the `Stream` dimension) and checkpoint (kept in the lease), all
sharing one detector. `BatchingDetector` (worker/fleet/batching.py) serves the streams' inference requests
in arrival order, so a stream with a backlog (which asks again as soon as it is answered) waits its
turn behind a live one instead of starving it; with KINASE_BATCH > 1 it also gathers frames of
several streams into one network call.

Settings are the one-off worker's (worker/settings.py) plus KINASE_LEASE_TABLE, KINASE_MAX_STREAMS,
KINASE_LEASE_DURATION, KINASE_ENV and KINASE_BATCH / KINASE_BATCH_WAIT (cross-stream batching);
KINASE_SOURCE is set per
stream. SIGTERM/SIGINT: every pipeline stops, flushes and checkpoints, and each lease is released
as soon as its pipeline has stopped, so another worker takes it at once. A watchdog thread stops
a stream's pipeline when its lease's belief ends on this worker's clock, even while the lease loop
hangs in a DynamoDB call, and each pipeline delivers only while its lease's fence is open
(LeaseCoordinator.fence: checked before every S3 and SQS write). Exit 0 after a clean
stop, 2 on invalid settings. Besides the per-stream metric lines, the worker logs
`StreamsPerWorker` (dimension `Environment`), the metric the fleet's ECS service scales on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time

from worker import settings as settings_module
from worker.events.rules_in_force import RulesInForce
from worker.fleet.batching import BatchingDetector
from worker.fleet.leases import LeaseCheckpointStore, LeaseCoordinator, LeaseTable
from worker.framebudget import FrameBudget
from worker.metrics import NAMESPACE
from worker.process import quiet_libraries, stop_on_signals
from worker.retry import error_code
from worker.sources.kinds import kvs_source

log = logging.getLogger("kinase.worker.fleet")
PLACEHOLDER_STREAM = "fleet"  # validates the shared settings before any stream is known
SHUTDOWN_TIMEOUT = 25.0  # Fargate kills 30 s after SIGTERM


class _Run:
    def __init__(self, worker, thread: threading.Thread):
        self.worker, self.thread = worker, thread
        self.gone = False
        self.last = (time.monotonic(), 0)


class StreamPipelines:
    """The coordinator's `Pipelines`: one one-stream worker thread per held stream."""

    def __init__(
        self, env: dict[str, str], detector, table: LeaseTable, worker_id: str, session_factory=None, fence=None, budget=None, rules=None
    ):
        """`fence(stream)` gives the started pipeline its lease's fence (LeaseCoordinator.fence, set once the
        coordinator exists): nothing is delivered or checkpointed once the lease is no longer believed in. `budget`
        (worker/framebudget.py) bounds the bytes of decoded frames waiting in all the streams' queues together;
        `rules` (worker/events/rules_in_force.py) are the rules in force, read once for all the streams."""
        self.env, self.detector, self.table, self.worker_id = env, detector, table, worker_id
        self.session_factory, self.fence, self.budget, self.rules = session_factory, fence, budget, rules
        self.runs: dict[str, _Run] = {}

    def start(self, stream: str) -> None:
        from worker.pipeline import Worker

        s = settings_module.load({**self.env, **settings_module.environment(source=kvs_source(stream), stream_name=stream)})
        stop = threading.Event()
        fence = self.fence(stream) if self.fence else (lambda: True)

        def checkpoints(incarnation, metrics, writes):
            return LeaseCheckpointStore(self.table, stream, self.worker_id, s.source, incarnation, metrics, writes, fence)

        session = self.session_factory() if self.session_factory else None
        worker = Worker(
            s,
            session=session,
            stop=stop,
            detector=self.detector,
            checkpoints=checkpoints,
            fence=fence,
            budget=self.budget,
            rules=self.rules,
        )
        thread = threading.Thread(target=self._run, args=(stream, worker), name=f"stream-{stream}", daemon=True)
        self.runs[stream] = _Run(worker, thread)
        log.info("reading %s", stream)
        thread.start()

    def _run(self, stream: str, worker) -> None:
        from worker.sources import SourceError

        try:
            code = worker.run()
        except SourceError as exc:
            if self._exists(stream, worker.session):
                log.error("%s: %s", stream, exc)
            else:  # removed with `kinase stream rm`: what happened, not the read's ResourceNotFoundException
                log.warning("%s: the stream was deleted; its pipeline stops", stream)
            code = 1
        except Exception:
            log.exception("pipeline for %s failed", stream)
            code = 1
        if code != 0 and not worker.stop.is_set():
            self.runs[stream].gone = not self._exists(stream, worker.session)
        log.info("pipeline for %s ended (exit %d)", stream, code)

    @staticmethod
    def _exists(stream: str, session) -> bool:
        """Still ours to read. The task role reads streams only through an aws:ResourceTag condition
        (infra/stacks/fleet.py, ReadEnvironmentStreams), which fails where the key is absent (IAM User
        Guide, "IAM JSON policy elements: Condition operators"): on AWS a deleted or untagged stream is
        answered AccessDeniedException, not ResourceNotFoundException, and its lease must go all the same."""
        from worker import aws

        try:
            aws.client(session, "kinesisvideo").describe_stream(StreamName=stream)
            return True
        except aws.ClientError as exc:
            code = error_code(exc)
            if code == "AccessDeniedException":
                log.warning("%s: DescribeStream denied: deleted or no longer tagged for this environment, so no longer ours", stream)
            return code not in ("ResourceNotFoundException", "AccessDeniedException")

    def stop(self, stream: str) -> None:
        run = self.runs.get(stream)
        if run is not None:
            run.worker.stop.set()

    def running(self, stream: str) -> bool:
        run = self.runs.get(stream)
        return run is not None and run.thread.is_alive()

    def gone(self, stream: str) -> bool:
        run = self.runs.get(stream)
        return run is not None and run.gone

    def stats(self, stream: str) -> dict:
        run = self.runs.get(stream)
        if run is None:
            return {}
        metrics = run.worker.metrics
        now, processed = time.monotonic(), metrics.totals["FramesProcessed"]
        then, before = run.last
        run.last = (now, processed)
        return {"fps": round((processed - before) / max(now - then, 1e-3), 3), "lag_ms": metrics.gauges.get("MillisBehindNow")}


def worker_id() -> str:
    """Unique per process: the host (a Fargate task's own) and the process id (`kinase fleet status --local` maps it)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def emit_share(coordinator: LeaseCoordinator, env_name: str, out=None) -> None:
    """The scaling metric as an embedded-metric line: the environment's streams per live worker, as this worker sees them."""
    out = out or sys.stdout
    record = {
        "Environment": env_name,
        "StreamsPerWorker": coordinator.share,
        "LeasedStreams": len(coordinator.streams()),
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Environment"]],
                    "Metrics": [{"Name": "StreamsPerWorker", "Unit": "Count"}, {"Name": "LeasedStreams", "Unit": "Count"}],
                }
            ],
        },
    }
    out.write(json.dumps(record, separators=(",", ":")) + "\n")
    out.flush()


def main(env=None) -> int:
    env = dict(os.environ if env is None else env)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        base = settings_module.load({**env, **settings_module.environment(source=kvs_source(PLACEHOLDER_STREAM))})
        if not base.lease_table:
            raise settings_module.SettingsError(f"{settings_module.BY_FIELD['lease_table'].name} is not set (the fleet's lease table)")
    except settings_module.SettingsError as exc:
        log.error("error: %s", exc)
        return 2
    logging.getLogger().setLevel(base.log_level)
    quiet_libraries()
    stop = stop_on_signals(log, "stopping every stream, checkpointing, releasing the leases", signal.SIGTERM, signal.SIGINT)

    from worker import aws
    from worker import detector as detectors
    from worker.detector import DetectorError

    try:
        detector = detectors.for_settings(base)
        detector = BatchingDetector(detector, base.batch, base.batch_wait / 1000.0)
        detector.warm(detectors.probe_image(base.imgsz))
    except DetectorError as exc:
        log.error("error: %s", exc)
        return 1
    me = worker_id()
    table = LeaseTable(aws.client(aws.session(), "dynamodb", config=aws.lease_config(base.lease_duration)), base.lease_table)
    rules = RulesInForce(aws.client(aws.session(), "s3"), base.bucket, base.rules_poll).start()
    pipelines = StreamPipelines(env, detector, table, me, budget=FrameBudget.for_settings(base), rules=rules)
    coordinator = LeaseCoordinator(table, me, pipelines, lease_duration=base.lease_duration, max_streams=base.max_streams)
    pipelines.fence = coordinator.fence
    watchdog = threading.Thread(target=coordinator.watch, args=(stop,), name="lease-watchdog", daemon=True)
    watchdog.start()
    log.info(
        "fleet worker %s: leases in %s, at most %d streams, lease duration %gs", me, base.lease_table, base.max_streams, base.lease_duration
    )
    emitter = threading.Thread(target=_emit_loop, args=(coordinator, base, stop), name="fleet-metrics", daemon=True)
    emitter.start()
    coordinator.run(stop)
    coordinator.shutdown(SHUTDOWN_TIMEOUT)
    if detector.max_batch > 1:
        log.info("batching: %s", detector.describe())
    log.info("fleet worker %s stopped", me)
    return 0


def _emit_loop(coordinator: LeaseCoordinator, base, stop: threading.Event) -> None:
    while not stop.wait(base.metrics_interval):
        emit_share(coordinator, base.env or "default")

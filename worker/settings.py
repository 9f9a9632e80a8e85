"""Worker settings: the one table of the worker's environment variables, and the parser built on it.

`SETTINGS` is the only place that names a `KINASE_*` variable of the worker, its default and its
meaning, the way worker/contract.py is for messages. Everything else follows from it:
`load()` parses the environment with it; `kinase run-task` builds its overrides with
`environment()`; the CDK task definition's environment comes from `environment()` and its IAM
policies from the bucket prefixes below; the settings tables of docs/OPERATIONS.md and
worker/README.md are `python -m worker.settings --markdown` (a test keeps them equal).

The task definition sets the defaults, `kinase run-task` overrides them, and the local worker gets
the same variables, so the environment is the only configuration surface. A bad value stops the
worker with one line naming the variable, before any AWS call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker import layout
from worker.backends import BACKENDS
from worker.sources.kinds import KVS_SCHEME, Kind, classify, kvs_stream
from worker.upload import CHOICES as UPLOAD_CHOICES
from worker.upload import parse as parse_upload

IMAGE_MODELS_DIR = Path("/opt/kinase/models")  # where the worker image keeps its models (worker/Dockerfile)
REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODEL = str(IMAGE_MODELS_DIR / "yolo11n.onnx")
# The frames bucket's layout: the worker writes frames and its checkpoint there and reads inputs;
# the task role's IAM policies grant exactly these prefixes.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


class SettingsError(ValueError):
    """An invalid or missing setting; the message is the one line the worker logs before exiting 2."""


@dataclass(frozen=True)
class Setting:
    field: str  # the Settings attribute, and the keyword of `environment()`
    type: str  # str | int | float | bool | choice | list
    default: str  # as written in the environment; "" with required=True means there is none
    help: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    shown_default: str = ""  # how the docs show a default that is derived, not a constant
    flag: str = ""  # the option of `kinase run-task` and `kinase fleet up` that sets it for a run (kinase_cli/options.py)
    fleet_only: bool = False  # the flag is `fleet up`'s only: a setting of the fleet worker

    @property
    def name(self) -> str:
        return "KINASE_" + self.field.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "source",
        "str",
        "",
        f"`{KVS_SCHEME}://STREAM`, a file path, `http(s)://`, `rtsp://` or `s3://bucket/key`",
        required=True,
        shown_default=f"`{KVS_SCHEME}://<stack stream>`",
    ),
    Setting("bucket", "str", "", "the frames bucket (storage stack output FramesBucketName)", required=True),
    Setting("queue_url", "str", "", "the results queue (storage stack output ResultsQueueUrl)", required=True),
    Setting("stream_name", "str", "", "name used in messages, frame ids and S3 keys", shown_default="the stream, or the file's stem"),
    Setting(
        "model",
        "str",
        DEFAULT_MODEL,
        f"a path, or a file name looked up in `{IMAGE_MODELS_DIR}` and `models/`: `.pt` (converted once for the backend, cached), `.onnx` or `.yaml`",
        flag="--model",
    ),
    Setting(
        "imgsz", "int", "640", "inference image size, a multiple of 32 (a fixed-size ONNX model uses its own)", minimum=32, flag="--imgsz"
    ),
    Setting("conf", "float", "0.25", "confidence threshold", minimum=0.0, maximum=1.0, flag="--conf"),
    Setting("classes", "list", "", "comma-separated class names to keep", shown_default="all"),
    Setting("device", "str", "auto", "`auto`, `cpu`, `cuda` or `cuda:N`"),
    Setting("backend", "str", "auto", "`auto` (the fastest, measured at start) or one of " + ", ".join(f"`{b}`" for b in BACKENDS)),
    Setting(
        "model_cache",
        "str",
        "",
        "folder of converted models, keyed by the weights' hash, the input size and the backend",
        shown_default="`~/.cache/kinase/models` (the image: `/opt/kinase/cache`, filled at build time)",
    ),
    Setting(
        "calibration",
        "str",
        "",
        "a folder of images or a video to calibrate int8 backends on when their model is not cached",
        shown_default="none (a forced int8 backend on a file source: its first frames)",
    ),
    Setting(
        "upload",
        "str",
        "all",
        f"which processed frames get their annotated JPEG in S3: {UPLOAD_CHOICES}; the others still get their message, with `key` null",
    ),
    Setting("jpeg_quality", "int", "85", "JPEG quality of the uploaded frames", minimum=1, maximum=100),
    Setting("every", "int", "1", "sampling: every N-th frame", minimum=1, flag="--every"),
    Setting("fps", "float", "0", "sampling: a target rate on the media clock (0 = off)", minimum=0.0, flag="--fps"),
    Setting("start", "choice", "NOW", "where a stream is read from when there is no usable checkpoint", choices=("NOW", "EARLIEST")),
    Setting("checkpoint", "bool", "1", f"resume from `{layout.CHECKPOINTS_PREFIX}<stream>.json` in the frames bucket (Kinesis Video)"),
    Setting("max_frames", "int", "0", "stop after N processed frames (0 = no limit)", minimum=0),
    Setting("idle_exit", "float", "0", "stop after S seconds without new media (0 = never)", minimum=0.0),
    Setting(
        "max_lag",
        "float",
        "30",
        "after a restart, skip to the live edge (reporting the gap) when the backlog is more than S seconds behind live; "
        "catching up after an outage (KINASE_OUTAGE=CATCHUP), skip what is further behind (0 = never)",
        minimum=0.0,
    ),
    Setting(
        "read_timeout",
        "float",
        "60",
        "seconds a GetMedia connection may send nothing before the stream counts as idle and the connection is renewed",
        minimum=0.1,
    ),
    Setting(
        "give_up_after", "float", "300", "seconds of failing GetMedia calls (errors, not idleness) before the worker exits 1", minimum=1.0
    ),
    Setting(
        "write_patience",
        "float",
        "0",
        "seconds a write (frame upload, message send, checkpoint) keeps failing before the worker exits 1 (0 = keep trying "
        "until it succeeds or the worker is stopped: an S3, SQS or DynamoDB outage costs no worker its life)",
        minimum=0.0,
    ),
    Setting(
        "call_timeout",
        "float",
        "10",
        "seconds an S3 or SQS call may send back nothing before it is dropped and sent again (a call with no answer is "
        "noticed in seconds, then retried by botocore and the write policy)",
        minimum=0.1,
    ),
    Setting(
        "outage",
        "choice",
        "DROP",
        "what a live stream's frames do while an outage blocks delivery: `DROP` them (counted, latency stays bounded), or "
        "`CATCHUP`: stop reading and process the backlog from the stream's retention afterwards, bounded by KINASE_MAX_LAG",
        choices=("DROP", "CATCHUP"),
    ),
    Setting(
        "write_warn_after",
        "float",
        "30",
        "seconds a write may stay pending before it logs a WARNING (again each time its wait doubles; its recovery logs one line)",
        minimum=0.1,
    ),
    Setting(
        "frame_memory_mb",
        "int",
        "",
        "MB of decoded frames the worker may hold (queued, in inference, in delivery), all its streams together; over it "
        "the oldest queued live frames of the stream with the most queued are dropped (counted), recorded sources' readers "
        "wait (0 = no bound: each live stream queues up to 64 frames, 1.6 GB at 4K)",
        minimum=0,
        shown_default="a quarter of the task's memory (task metadata `Limits.Memory`, else the cgroup's limit), 512 if neither is readable",
    ),
    Setting(
        "lease_table",
        "str",
        "",
        "fleet mode (`python -m worker.fleet`): the lease table (storage stack output LeaseTableName); one lease per stream",
        shown_default="none (a one-off worker)",
    ),
    Setting(
        "max_streams",
        "int",
        "8",
        "fleet mode: streams one worker reads at most",
        minimum=1,
        flag="--max-streams-per-worker",
        fleet_only=True,
    ),
    Setting(
        "lease_duration",
        "float",
        "15",
        "fleet mode: seconds a lease stands without renewal (renewed every third of it) before another worker takes it over; "
        "a lease table call times out after an eighth of it (at least 1 s; two attempts), and a worker stops delivering a stream once its "
        "lease is this old on its own clock, even while a renewal hangs",
        minimum=0.1,
    ),
    Setting("env", "str", "", "fleet mode: the environment's name (dimension of the StreamsPerWorker scaling metric)"),
    Setting(
        "batch",
        "int",
        "1",
        "fleet mode: most frames of different streams run through the model in one call (1 = off; meant for GPUs, not measured "
        "on one yet; no gain on the CPU measured in docs/BENCHMARKS.md; needs a model with a dynamic batch axis, as a converted `.pt` has)",
        minimum=1,
    ),
    Setting(
        "batch_wait",
        "float",
        "20",
        "fleet mode: milliseconds the oldest frame waits for other streams' frames to fill a batch",
        minimum=0.0,
    ),
    Setting(
        "events_topic_arn",
        "str",
        "",
        "the environment's events topic (storage stack output EventsTopicArn): where `kinase.event/1` events are published",
        shown_default="none: events are built, counted and logged, not published",
    ),
    Setting(
        "rules_poll",
        "float",
        "5",
        "seconds between looks for new rules in the frames bucket (`kinase rules apply`); the version in force is logged (0 = only at start)",
        minimum=0.0,
    ),
    Setting(
        "track_lost_s",
        "float",
        "2",
        "seconds of media time a tracked object may go unseen before its track ends (it leaves its zones; a new sighting gets a new id)",
        minimum=0.0,
    ),
    Setting(
        "camera_offline_s",
        "float",
        "30",
        "a live stream without media for S seconds gives a `camera_offline` event, its next frame `camera_online` (0 = never)",
        minimum=0.0,
    ),
    Setting("log_level", "choice", "INFO", "DEBUG logs every delivered key", choices=LOG_LEVELS),
    Setting("metrics_interval", "float", "10", "seconds between metric lines", minimum=0.1),
)
BY_FIELD = {s.field: s for s in SETTINGS}


def var(field: str) -> str:
    """The environment variable of a setting, for messages and help that name it."""
    return BY_FIELD[field].name


@dataclass(frozen=True)
class Settings:
    source: str
    source_type: str  # the contract's source.type: kvs | file | url | s3 (worker/sources/kinds.py)
    live: bool  # live sources drop old frames under overload; recorded ones process every sampled frame
    stream_name: str
    bucket: str
    queue_url: str
    model: str
    imgsz: int = 640
    conf: float = 0.25
    classes: tuple[str, ...] = ()
    device: str = "auto"
    backend: str = "auto"
    model_cache: str = ""
    calibration: str = ""
    upload: str = "all"
    jpeg_quality: int = 85
    every: int = 1
    fps: float = 0.0
    start: str = "NOW"
    checkpoint: bool = True
    max_frames: int = 0
    idle_exit: float = 0.0
    max_lag: float = 30.0
    read_timeout: float = 60.0
    give_up_after: float = 300.0
    call_timeout: float = 10.0
    write_patience: float = 0.0
    write_warn_after: float = 30.0
    outage: str = "DROP"
    lease_table: str = ""
    frame_memory_mb: int | None = None  # None: derived from the task's memory (worker/framebudget.py)
    max_streams: int = 8
    lease_duration: float = 15.0
    env: str = ""
    batch: int = 1
    batch_wait: float = 20.0
    events_topic_arn: str = ""
    rules_poll: float = 5.0
    track_lost_s: float = 2.0
    camera_offline_s: float = 30.0
    log_level: str = "INFO"
    metrics_interval: float = 10.0

    @property
    def kvs_stream(self) -> str:
        return kvs_stream(self.source)

    @property
    def source_kind(self) -> Kind:
        """What the source can do (live, resumable, local: worker/sources/kinds.py)."""
        return classify(self.source)

    @property
    def checkpoint_key(self) -> str:
        return layout.checkpoint_key(self.stream_name)


def environment(**values) -> dict[str, str]:
    """Worker environment variables for these settings, e.g. `environment(start="EARLIEST")` ->
    `{"KINASE_START": "EARLIEST"}`; None values are left out. Unknown names are a programming error."""
    unknown = set(values) - set(BY_FIELD)
    if unknown:
        raise KeyError(f"no worker setting {', '.join(sorted(unknown))}")
    return {BY_FIELD[k].name: _text(v) for k, v in values.items() if v is not None}


def _text(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(value)
    return str(value)


def _parse(setting: Setting, raw: str):
    name = setting.name
    if setting.type in ("int", "float"):
        try:
            value = int(raw) if setting.type == "int" else float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not {'an integer' if setting.type == 'int' else 'a number'}") from None
        low, high = setting.minimum, setting.maximum
        if (low is not None and value < low) or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low:g}"
            raise SettingsError(f"{name}={raw!r} must be {bound}")
        return value
    if setting.type == "bool":
        if raw.lower() not in TRUE + FALSE:
            raise SettingsError(f"{name}={raw!r} must be 1 or 0")
        return raw.lower() in TRUE
    if setting.type == "choice":
        if raw.upper() not in setting.choices:
            allowed = " or ".join(setting.choices) if len(setting.choices) == 2 else "one of " + ", ".join(setting.choices)
            raise SettingsError(f"{name}={raw!r} must be {allowed}")
        return raw.upper()
    if setting.type == "list":
        return tuple(c.strip() for c in raw.split(",") if c.strip())
    return raw


def resolve_model(value: str) -> str:
    """A path, or a bare file name looked up in the image's and the repository's models folders."""
    path = Path(value).expanduser()
    if path.exists() or value.endswith(".yaml"):
        return str(path) if path.exists() else value
    if path.name == value:
        for folder in (IMAGE_MODELS_DIR, REPO_MODELS_DIR):
            if (folder / value).exists():
                return str(folder / value)
    if value == DEFAULT_MODEL:
        return value
    name = BY_FIELD["model"].name
    raise SettingsError(f"{name}={value!r}: no such model file (looked in ., {IMAGE_MODELS_DIR}, {REPO_MODELS_DIR})")


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict = {}
    for setting in SETTINGS:
        raw = env.get(setting.name, "").strip() or setting.default
        if setting.required and not raw:
            raise SettingsError(f"{setting.name} is not set ({setting.help})")
        values[setting.field] = _parse(setting, raw) if raw else ""
    source = values["source"]
    kind = classify(source)
    source_name = BY_FIELD["source"].name
    why = kind.invalid(source)
    if why:
        raise SettingsError(f"{source_name}={source!r}{why}")
    if not values["stream_name"]:
        values["stream_name"] = kind.default_stream(source)
    device = values["device"].lower()
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise SettingsError(f"{BY_FIELD['device'].name}={device!r} must be auto, cpu or cuda")
    values["device"] = device
    backend = values["backend"].lower()
    if backend != "auto" and backend not in BACKENDS:
        raise SettingsError(f"{BY_FIELD['backend'].name}={backend!r} must be auto or one of {', '.join(BACKENDS)}")
    values["backend"] = backend
    upload = values["upload"].strip().lower()
    try:
        parse_upload(upload)
    except ValueError as exc:
        raise SettingsError(f"{BY_FIELD['upload'].name}={values['upload']!r} {exc}") from None
    values["upload"] = upload
    if values["imgsz"] % 32:
        raise SettingsError(f"{BY_FIELD['imgsz'].name}={values['imgsz']} must be a multiple of 32")
    values["classes"] = values["classes"] or ()
    values["frame_memory_mb"] = None if values["frame_memory_mb"] == "" else values["frame_memory_mb"]
    values["model"] = resolve_model(values["model"])
    return Settings(source_type=kind.name, live=kind.live, **values)


DOC_BEGIN = "<!-- worker settings: generated by `python -m worker.settings --markdown` -->"
DOC_END = "<!-- end of worker settings -->"


def markdown() -> str:
    """The settings table as the docs show it (docs/OPERATIONS.md, worker/README.md)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.shown_default or (f"`{s.default}`" if s.default else "(required)")
        rows.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        raise SystemExit("usage: python -m worker.settings --markdown")
    sys.stdout.write(markdown())

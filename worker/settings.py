"""Worker settings, read once from environment variables.

The task definition sets the defaults, `kinase run-task` overrides them, and the local worker gets
the same variables, so the environment is the only configuration surface. A bad value stops the
worker with one line naming the variable, before any AWS call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

IMAGE_MODELS_DIR = Path("/opt/kinase/models")
REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
INPUTS_PREFIX = "inputs/"  # videos uploaded for a run (`kinase run-task --source FILE`); the task role may read them


class SettingsError(ValueError):
    """An invalid or missing setting; the message is the one line the worker logs before exiting 2."""


@dataclass(frozen=True)
class Settings:
    source: str
    source_type: str  # kvs | file | url | s3
    stream_name: str
    bucket: str
    queue_url: str
    model: str
    imgsz: int = 640
    conf: float = 0.25
    classes: tuple[str, ...] = ()
    device: str = "auto"
    every: int = 1
    fps: float = 0.0
    start: str = "NOW"
    checkpoint: bool = True
    max_frames: int = 0
    idle_exit: float = 0.0
    log_level: str = "INFO"
    metrics_interval: float = 10.0

    @property
    def kvs_stream(self) -> str:
        return self.source[len("kvs://") :]

    @property
    def live(self) -> bool:
        """Live sources drop old frames under overload; recorded ones process every sampled frame."""
        return self.source_type == "kvs" or self.source.startswith("rtsp://")

    @property
    def checkpoint_key(self) -> str:
        from worker.contract import CHECKPOINTS_PREFIX, safe_component

        return f"{CHECKPOINTS_PREFIX}{safe_component(self.stream_name)}.json"


def source_type(source: str) -> str:
    scheme = urlparse(source).scheme.lower()
    if scheme == "kvs":
        return "kvs"
    if scheme == "s3":
        return "s3"
    if scheme in ("http", "https", "rtsp", "rtmp"):
        return "url"
    return "file"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(f"{name}={raw!r} must be {bound}")
    return value


def resolve_model(value: str) -> str:
    """A path, or a bare file name looked up in the image's and the repository's models folders."""
    if not value:
        return str(IMAGE_MODELS_DIR / "yolo11n.onnx")
    path = Path(value).expanduser()
    if path.exists() or value.endswith(".yaml"):
        return str(path) if path.exists() else value
    if path.name == value:
        for folder in (IMAGE_MODELS_DIR, REPO_MODELS_DIR):
            if (folder / value).exists():
                return str(folder / value)
    raise SettingsError(f"KINASE_MODEL={value!r}: no such model file (looked in ., {IMAGE_MODELS_DIR}, {REPO_MODELS_DIR})")


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    source = env.get("KINASE_SOURCE", "").strip()
    if not source:
        raise SettingsError("KINASE_SOURCE is not set (kvs://STREAM, a file path, http(s)://, rtsp:// or s3://bucket/key)")
    kind = source_type(source)
    if kind == "kvs" and not source[len("kvs://") :]:
        raise SettingsError(f"KINASE_SOURCE={source!r} names no stream (kvs://STREAM)")
    if kind == "s3":
        parsed = urlparse(source)
        if not parsed.netloc or not parsed.path.strip("/"):
            raise SettingsError(f"KINASE_SOURCE={source!r} is not s3://bucket/key")
    if kind == "file" and not Path(source).is_file():
        raise SettingsError(f"KINASE_SOURCE={source!r}: no such file")

    stream_name = env.get("KINASE_STREAM_NAME", "").strip()
    if not stream_name:
        stream_name = source[len("kvs://") :] if kind == "kvs" else Path(urlparse(source).path).stem or "stream"

    bucket = env.get("KINASE_BUCKET", "").strip()
    queue_url = env.get("KINASE_QUEUE_URL", "").strip()
    if not bucket:
        raise SettingsError("KINASE_BUCKET is not set (the frames bucket, from the storage stack outputs)")
    if not queue_url:
        raise SettingsError("KINASE_QUEUE_URL is not set (the results queue URL, from the storage stack outputs)")

    device = env.get("KINASE_DEVICE", "auto").strip().lower() or "auto"
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise SettingsError(f"KINASE_DEVICE={device!r} must be auto, cpu or cuda")
    start = env.get("KINASE_START", "NOW").strip().upper() or "NOW"
    if start not in ("NOW", "EARLIEST"):
        raise SettingsError(f"KINASE_START={start!r} must be NOW or EARLIEST")
    checkpoint = env.get("KINASE_CHECKPOINT", "1").strip().lower() or "1"
    if checkpoint not in ("1", "0", "true", "false", "yes", "no"):
        raise SettingsError(f"KINASE_CHECKPOINT={checkpoint!r} must be 1 or 0")
    level = env.get("KINASE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in LOG_LEVELS:
        raise SettingsError(f"KINASE_LOG_LEVEL={level!r} must be one of {', '.join(LOG_LEVELS)}")
    classes = tuple(c.strip() for c in env.get("KINASE_CLASSES", "").split(",") if c.strip())
    imgsz = _int(env, "KINASE_IMGSZ", 640, minimum=32)
    if imgsz % 32:
        raise SettingsError(f"KINASE_IMGSZ={imgsz} must be a multiple of 32")

    return Settings(
        source=source,
        source_type=kind,
        stream_name=stream_name,
        bucket=bucket,
        queue_url=queue_url,
        model=resolve_model(env.get("KINASE_MODEL", "").strip()),
        imgsz=imgsz,
        conf=_float(env, "KINASE_CONF", 0.25, 0.0, 1.0),
        classes=classes,
        device=device,
        every=_int(env, "KINASE_EVERY", 1, minimum=1),
        fps=_float(env, "KINASE_FPS", 0.0),
        start=start,
        checkpoint=checkpoint in ("1", "true", "yes"),
        max_frames=_int(env, "KINASE_MAX_FRAMES", 0),
        idle_exit=_float(env, "KINASE_IDLE_EXIT", 0.0),
        log_level=level,
        metrics_interval=_float(env, "KINASE_METRICS_INTERVAL", 10.0, minimum=0.1),
    )

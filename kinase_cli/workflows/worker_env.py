"""The worker's environment as `run-task` and `demo` build it: names and defaults come from the one
settings table, worker/settings.py (the same table the CDK task definition and the docs use)."""

from __future__ import annotations

from pathlib import Path

from kinase_cli.options import check_source
from kinase_cli.ui.errors import KinaseError
from worker import settings as worker

ENV_VAR_EXAMPLE = f"-e {worker.BY_FIELD['classes'].name}=person,car"


def overrides(
    stream: str | None,
    source: str | None,
    model: str | None,
    imgsz: int | None,
    conf: float | None,
    every: int | None,
    fps: float | None,
    env_vars: list[str],
    local: bool,
) -> dict[str, str]:
    """The worker environment variables this run overrides (the table in docs/OPERATIONS.md)."""
    if stream and source:
        raise KinaseError("--stream and --source are exclusive", "name a Kinesis Video stream or give a source URI, not both")
    values: dict = {"imgsz": imgsz, "conf": conf, "every": every, "fps": fps}
    if stream:
        values.update(source=worker.kvs_source(stream), stream_name=stream)
    if source:
        check_source(source)
        # run-task uploads a local file to the frames bucket's inputs/ and runs on that object (workflows/inputs.py).
        values["source"] = _local_path(source) if local else source
    if model:
        values["model"] = _local_path(model) if local else model
    settings = worker.environment(**values)
    for item in env_vars:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KinaseError(f"--env-var {item!r} is not KEY=VALUE", f"e.g. {ENV_VAR_EXAMPLE}")
        settings[key.strip()] = value
    return settings


def _local_path(value: str) -> str:
    """A relative file path given to a local worker, made absolute (the worker runs in the repository root)."""
    path = Path(value).expanduser()
    return str(path.resolve()) if "://" not in value and path.exists() else value


def local_model(base: dict[str, str], settings: dict[str, str]) -> dict[str, str]:
    """The task definition's environment for a local worker: a model inside the image becomes the
    same file under the repository's models/ folder."""
    name = worker.BY_FIELD["model"].name
    model = settings.get(name) or base.get(name, "")
    image_dir = str(worker.IMAGE_MODELS_DIR) + "/"
    if not model.startswith(image_dir):
        return base
    here = worker.REPO_MODELS_DIR / model[len(image_dir) :]
    if here.exists():
        return {**base, name: str(here)}
    if name in settings:
        return base
    raise KinaseError(f"the task definition's model {model} is only inside the image", "pass --model PATH for the local worker")


def demo_overrides(frames: int, idle_exit: float) -> list[str]:
    """`-e` options of the demo's worker: read the stream from its start, stop after the clip."""
    env = worker.environment(start="EARLIEST", max_frames=frames, idle_exit=idle_exit)
    return [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]

"""The worker's environment for a run, built one way for `run-task`, `fleet up` (and `fleet roll`) and the demo:
names, defaults and the options that set them come from the one settings table, worker/settings.py (the same
table the CDK task definition and the docs use)."""

from __future__ import annotations

from pathlib import Path

from kinase_cli.aws import taskdef
from kinase_cli.options import WorkerRun, check_source
from kinase_cli.ui.errors import KinaseError
from worker import settings as worker
from worker.sources.kinds import kvs_source

ENV_VAR_EXAMPLE = f"-e {worker.BY_FIELD['classes'].name}=person,car"


def build(run: WorkerRun, *, local: bool, stream: str | None = None, source: str | None = None) -> dict[str, str]:
    """The worker environment variables this run overrides (the table in docs/OPERATIONS.md): the settings'
    options, then `--gpu` (a local worker uses CUDA), then `-e KEY=VALUE`, which wins over both."""
    if stream and source:
        raise KinaseError("--stream and --source are exclusive", "name a Kinesis Video stream or give a source URI, not both")
    values = dict(run.values)
    if stream:
        values.update(source=kvs_source(stream), stream_name=stream)
    if source:
        check_source(source)
        # run-task uploads a local file to the frames bucket's inputs/ and runs on that object (workflows/inputs.py).
        values["source"] = _local_path(source) if local else source
    if local and values.get("model"):
        values["model"] = _local_path(str(values["model"]))
    if local and run.gpu:
        values["device"] = "cuda"
    settings = worker.environment(**values)
    for item in run.env_vars:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KinaseError(f"--env-var {item!r} is not KEY=VALUE", f"e.g. {ENV_VAR_EXAMPLE}")
        settings[key.strip()] = value
    return settings


def _local_path(value: str) -> str:
    """A relative file path given to a local worker, made absolute (the worker runs in the repository root)."""
    path = Path(value).expanduser()
    return str(path.resolve()) if "://" not in value and path.exists() else value


def local_settings(definition: dict, container: str, overrides: dict[str, str]) -> dict[str, str]:
    """The settings of a local worker: the task definition's container environment, as ECS gives it, then the
    run's overrides."""
    return {**local_model(taskdef.environment(definition, container), overrides), **overrides}


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


def run_task_args(**values) -> list[str]:
    """`kinase run-task` arguments that give its worker these settings (`run_task_args(start="EARLIEST")`): a
    setting's own option where it has one, `-e NAME=VALUE` otherwise (the demo starts its worker this way)."""
    args: list[str] = []
    for field, value in worker.environment(**values).items():
        setting = worker.BY_FIELD[field[len("KINASE_") :].lower()]
        args += [setting.flag, value] if setting.flag and not setting.fleet_only else ["-e", f"{field}={value}"]
    return args

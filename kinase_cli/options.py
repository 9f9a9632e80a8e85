"""The options every AWS-facing command shares, declared once, and checked before any work starts."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from infra import naming
from kinase_cli.aws import placement
from kinase_cli.aws.target import Target, check_region
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import visible
from worker import settings as worker_settings

ENV_MAX = 32
# Lowercase letters and digits, starting with a letter: valid inside a CloudFormation stack name, an ECR
# repository name, a Kinesis Video stream name and a single folder name under KINASE_HOME. No `-`, the
# separator of `kinase-<env>-<part>`: so one environment's prefix never begins another's names
# (infra/naming.py says why).
_ENV = re.compile(r"[a-z][a-z0-9]*")
_OLD_ENV = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # the rule before: names an environment deployed then may have


def check_env(value: str) -> str:
    if len(value) <= ENV_MAX and _ENV.fullmatch(value):
        return value
    spelled = _suggestion(value)
    rule = f"lowercase letters and digits, starting with a letter, at most {ENV_MAX} characters"
    hint = f"use '{spelled}': {rule}" if spelled else f"use {rule}"
    if "-" in value and _OLD_ENV.fullmatch(value) and len(value) <= ENV_MAX:
        hint += f", no '-', so no environment's names start with another's; an environment deployed as '{value}': docs/OPERATIONS.md §8"
    raise KinaseError(f"environment name '{visible(value, limit=60)}' is not valid", hint, exit_code=2)


def _suggestion(value: str) -> str | None:
    """The hyphen-free, lowercase spelling of a name made of letters, digits and hyphens (`prod-eu` -> `prodeu`)."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", value):
        return None
    spelled = value.replace("-", "").lower()
    return spelled if len(spelled) <= ENV_MAX and _ENV.fullmatch(spelled) else None


def check_source(value: str) -> str:
    """A local `--source` path that is a directory or cannot be read fails here, in one line, before any
    task starts (a missing file is the worker's to report: it names the path it tried)."""
    if "://" in value:
        return value
    path = Path(value).expanduser()
    try:
        if path.is_dir():
            raise KinaseError(
                f"--source {visible(value, limit=200)} is a directory", "give a video file, a URL or s3://BUCKET/KEY", exit_code=2
            )
        if path.is_file():  # devices and pipes (a camera, a feed) are the worker's to open
            with open(path, "rb"):
                pass
    except OSError as exc:
        raise KinaseError(f"--source {visible(value, limit=200)} cannot be read: {exc.strerror or exc}", exit_code=2) from None
    return value


def _region_option(value: Optional[str]) -> Optional[str]:
    return None if value is None else check_region(value)


Profile = Annotated[Optional[str], typer.Option("--profile", envvar="AWS_PROFILE", help="AWS named profile.", show_default=False)]
Region = Annotated[
    Optional[str], typer.Option("--region", envvar="AWS_REGION", callback=_region_option, help="AWS region.", show_default=False)
]
Local = Annotated[bool, typer.Option("--local", envvar="KINASE_LOCAL", help="Target the local stack (`kinase local up`) instead of AWS.")]
Env = Annotated[str, typer.Option("--env", envvar="KINASE_ENV", callback=check_env, help="Environment name carried by the stack names.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout (see docs/OPERATIONS.md).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _target(profile: Optional[str], region: Optional[str], local: bool, env: str = naming.DEFAULT_ENV) -> Target:
    """The one place a command's target is made; on AWS, flags not given come from the environment's last deploy."""
    if not local:
        profile, region = placement.resolve(check_env(env), profile, region)
    return Target(profile=profile, region=region, local=local, env=check_env(env))


_TARGET_OPTIONS = tuple(
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("profile", Profile, None),
        ("region", Region, None),
        ("local", Local, False),
        ("env", Env, naming.DEFAULT_ENV),
    )
)


def with_target(command: Callable) -> Callable:
    """Gives a command that takes `target: Target` the options that make one (--profile, --region, --local, --env,
    last in its --help), so they are declared once for every AWS-facing command instead of in each signature.

    Typer reads the command's parameters from `inspect.signature` and `get_type_hints`, so the wrapper carries a
    signature (and annotations) with `target` replaced by the four options.
    """
    signature = inspect.signature(command, eval_str=True)
    if "target" not in signature.parameters:
        raise TypeError(f"{command.__qualname__} takes no `target` parameter")
    parameters = [p for name, p in signature.parameters.items() if name != "target"] + list(_TARGET_OPTIONS)

    @functools.wraps(command)
    def run(*, profile: Optional[str], region: Optional[str], local: bool, env: str, **kwargs):
        return command(**kwargs, target=_target(profile, region, local, env))

    run.__signature__ = signature.replace(parameters=parameters)
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


@dataclass(frozen=True)
class WorkerRun:
    """What a run's worker options gave: setting values by field (only those given), `-e` items, and --gpu;
    `kinase_cli/workflows/worker_env.build` turns it into the worker's environment."""

    values: dict[str, object] = field(default_factory=dict)
    env_vars: tuple[str, ...] = ()
    gpu: bool = False


_TYPES = {"int": int, "float": float, "bool": bool}


def _setting_option(setting: worker_settings.Setting):
    """A Typer option for a worker setting, from its row: the flag, the help, the bounds, the choices."""
    flag = f"{setting.flag}/--no-{setting.flag[2:]}" if setting.type == "bool" else setting.flag
    kind = Literal[setting.choices] if setting.choices else _TYPES.get(setting.type, str)
    extra = {"case_sensitive": False} if setting.choices else {}
    if setting.minimum is not None:
        extra["min"] = setting.minimum
    if setting.maximum is not None:
        extra["max"] = setting.maximum
    option = typer.Option(flag, help=f"{setting.help[0].upper()}{setting.help[1:]} ({setting.name}).", show_default=False, **extra)
    return Annotated[Optional[kind], option]


EnvVars = Annotated[
    Optional[list[str]],
    typer.Option("--env-var", "-e", help="A worker setting KEY=VALUE (repeatable; see docs/OPERATIONS.md).", show_default=False),
]


def with_worker_options(*, fleet: bool, gpu_help: str) -> Callable[[Callable], Callable]:
    """Gives a command that takes `worker: WorkerRun` an option for every worker setting with a flag in the settings
    table (worker/settings.py; `fleet_only` ones only to the fleet), `--env-var/-e` and `--gpu`, in its place.

    So adding a per-run worker setting to `run-task` and `fleet up` is one row of the table. The table is read when
    the command is declared (at import), so the options cost no work at start-up beyond their declaration.
    """
    settings = [s for s in worker_settings.SETTINGS if s.flag and (fleet or not s.fleet_only)]
    own = [
        inspect.Parameter(f"setting_{s.field}", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_setting_option(s))
        for s in settings
    ]
    gpu = Annotated[bool, typer.Option("--gpu", help=gpu_help)]
    own += [
        inspect.Parameter("env_vars", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=EnvVars),
        inspect.Parameter("gpu", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=gpu),
    ]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        if "worker" not in signature.parameters:
            raise TypeError(f"{command.__qualname__} takes no `worker` parameter")
        parameters = []
        for name, parameter in signature.parameters.items():
            parameters += own if name == "worker" else [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)]

        @functools.wraps(command)
        def run(**kwargs):
            values = {s.field: kwargs.pop(f"setting_{s.field}") for s in settings}
            given = {name: value for name, value in values.items() if value is not None}
            worker = WorkerRun(given, tuple(kwargs.pop("env_vars") or ()), kwargs.pop("gpu"))
            return command(**kwargs, worker=worker)

        run.__signature__ = signature.replace(parameters=parameters)
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate

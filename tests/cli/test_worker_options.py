"""A per-run worker setting is one row of the settings table (worker/settings.py): `run-task` and `fleet up` get
its option (flag, help, bounds, choices) from options.with_worker_options, and the environment both build for the
worker (workflows/worker_env.build) carries it; the demo passes its settings through the same options."""

from __future__ import annotations

import importlib

import pytest
import typer
from typer.testing import CliRunner

from kinase_cli.commands import fleet as fleet_command
from kinase_cli.commands import tasks as tasks_command
from kinase_cli.workflows import fleet as fleet_workflow
from kinase_cli.workflows import run_task as run_workflow
from kinase_cli.workflows import worker_env
from worker import settings as worker_settings

TRACKER = worker_settings.Setting(
    "tracker", "choice", "NONE", "which tracker follows the objects", choices=("NONE", "BYTETRACK"), flag="--tracker"
)
WINDOW = worker_settings.Setting("track_window", "int", "30", "frames a lost track is kept", minimum=1, maximum=90, flag="--track-window")


@pytest.fixture
def app():
    """A fresh app whose commands were declared with two settings added to the table."""
    table, by_field = worker_settings.SETTINGS, worker_settings.BY_FIELD
    worker_settings.SETTINGS = (*table, TRACKER, WINDOW)
    worker_settings.BY_FIELD = {**by_field, "tracker": TRACKER, "track_window": WINDOW}
    try:
        fresh = typer.Typer()
        for module in (tasks_command, fleet_command):
            importlib.reload(module).register(fresh)
        yield fresh
    finally:
        worker_settings.SETTINGS, worker_settings.BY_FIELD = table, by_field
        for module in (tasks_command, fleet_command):
            importlib.reload(module)


def invoke(app, *args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


@pytest.mark.parametrize("command", [["run-task"], ["fleet", "up"]])
def test_a_setting_added_to_the_table_is_an_option_of_both_commands(app, command):
    shown = invoke(app, *command, "--help").output
    assert "--tracker" in shown and "Which tracker follows the objects (KINASE_TRACKER)." in shown
    assert "--track-window" in shown and "1<=x<=90" in shown
    refused = invoke(app, *command, "--track-window", "91", "--local")
    assert refused.exit_code == 2 and "--track-window" in refused.output and "less than or equal to 90" in refused.output
    refused = invoke(app, *command, "--tracker", "sort", "--local")
    assert refused.exit_code == 2 and "'sort' is not one of 'none', 'bytetrack'" in refused.output


def test_both_commands_build_the_environment_with_it(app, monkeypatch):
    built = {}

    def prepare(target, overrides, stream, count):
        built["run-task"] = dict(overrides)
        return {}

    monkeypatch.setattr(run_workflow, "prepare", prepare)
    monkeypatch.setattr(run_workflow, "run_local", lambda target, outputs, overrides, on_line: {"task_id": "t", "exit_code": 0, "log": ""})

    def up(target, workers, overrides, gpu):
        built["fleet up"] = dict(overrides)
        return {"local": True, "gpu": gpu, "workers": []}

    monkeypatch.setattr(fleet_workflow, "up", up)
    given = ("--tracker", "bytetrack", "--track-window", "12", "--conf", "0.5", "-e", "KINASE_CLASSES=person", "--local")
    assert invoke(app, "run-task", *given).exit_code == 0
    assert invoke(app, "fleet", "up", *given).exit_code == 0
    expected = {"KINASE_TRACKER": "BYTETRACK", "KINASE_TRACK_WINDOW": "12", "KINASE_CONF": "0.5", "KINASE_CLASSES": "person"}
    assert built == {"run-task": expected, "fleet up": expected}


def test_fleet_only_settings_are_not_options_of_run_task():
    assert "--max-streams-per-worker" not in CliRunner().invoke(_app(tasks_command), ["--help"], env={"COLUMNS": "200"}).output


def _app(module) -> typer.Typer:
    single = typer.Typer()
    module.register(single)
    return single


def test_the_demo_starts_its_worker_through_the_same_options():
    args = worker_env.run_task_args(model="m.onnx", imgsz=320, start="EARLIEST", max_streams=2)
    assert args == ["--model", "m.onnx", "--imgsz", "320", "-e", "KINASE_START=EARLIEST", "-e", "KINASE_MAX_STREAMS=2"]

"""Every command and sub-command explains itself, and every one is documented for operators."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from kinase_cli.main import app
from support.cli import ROOT

DOCS = ("README.md", "docs/OPERATIONS.md")


def command_paths(group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """(path, command) for every command below `group`; groups are whatever has sub-commands (typer vendors click)."""
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        found.append((path, command))
        if getattr(command, "commands", None):
            found.extend(command_paths(command, path))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def test_the_tree_has_the_foundation_commands():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"synth", "diff", "deploy", "destroy", "outputs", "local", "local up", "local status", "local down"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_text(path):
    command = dict(COMMANDS)[path]
    assert (command.help or "").strip(), f"kinase {' '.join(path)} has no help text"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and command.help.split()[0] in result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_names_values_not_python_types(path):
    """Flags show no type; values show a metavar or a plain word (TEXT, INTEGER), never `<bool>`, `<str>`, `<list[str]>`."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    leftovers = re.findall(r"<(?:bool|str|int|float|path|list\[\w+\])[^>]*>", result.output)
    assert not leftovers, f"kinase {' '.join(path)} --help shows {sorted(set(leftovers))}"


def test_flags_and_values_in_one_help():
    text = CliRunner().invoke(app, ["run-task", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--wait\s+Wait until", text), "a flag has no value column"
    assert re.search(r"--imgsz\s+INTEGER \[x>=32\]", text)
    assert re.search(r"--env-var\s+-e\s+TEXT\.\.\.", text)


def test_every_command_is_documented():
    text = "\n".join((ROOT / doc).read_text() for doc in DOCS if (ROOT / doc).exists())
    missing = [" ".join(path) for path, _ in COMMANDS if f"kinase {' '.join(path)}" not in text]
    assert not missing, f"not mentioned in {' or '.join(DOCS)}: {missing}"

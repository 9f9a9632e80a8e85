"""Every command and sub-command explains itself, and every one is documented for operators."""

from __future__ import annotations

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


def test_every_command_is_documented():
    text = "\n".join((ROOT / doc).read_text() for doc in DOCS if (ROOT / doc).exists())
    missing = [" ".join(path) for path, _ in COMMANDS if f"kinase {' '.join(path)}" not in text]
    assert not missing, f"not mentioned in {' or '.join(DOCS)}: {missing}"

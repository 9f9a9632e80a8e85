"""The README's AWS sequence is written against the real CLI: every command and flag in it parses."""

from __future__ import annotations

import re
import shlex

import typer

from kinase_cli.main import app
from support.cli import ROOT


def aws_sequence() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## On AWS") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)[1]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_the_sequence_covers_a_whole_deployment_in_one_region():
    commands = [" ".join(argv[1:3]) for argv in aws_sequence()]
    for step in ("bootstrap", "deploy", "push-image", "stream put", "run-task", "watch", "destroy"):
        assert any(c == step or c.startswith(f"{step} ") for c in commands), step
    regions = {argv[argv.index("--region") + 1] for argv in aws_sequence() if "--region" in argv}
    assert len(regions) == 1, regions


def test_every_command_and_flag_in_the_sequence_parses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "camera.mp4").write_bytes(b"")
    group = typer.main.get_command(app)
    for argv in aws_sequence():
        assert argv[0] == "kinase"
        ctx = group.make_context("kinase", argv[1:], resilient_parsing=False)
        name, command, rest = group.resolve_command(ctx, ctx._protected_args + ctx.args)
        while hasattr(command, "resolve_command"):
            sub = command.make_context(name, rest, parent=ctx)
            name, command, rest = command.resolve_command(sub, sub._protected_args + sub.args)
            ctx = sub
        command.make_context(name, rest, parent=ctx)  # raises on an unknown flag or a bad value

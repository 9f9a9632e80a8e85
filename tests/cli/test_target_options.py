"""The target options (--profile, --region, --local, --env) are declared once, by options.with_target: every
AWS-facing command has them last, with their environment variables, and gets the Target they make."""

from __future__ import annotations

import typer
import typer.main
from typer.testing import CliRunner

from kinase_cli.aws import placement
from kinase_cli.aws.target import Target
from kinase_cli.main import app
from kinase_cli.options import with_target

TARGET_OPTIONS = [("profile", "AWS_PROFILE"), ("region", "AWS_REGION"), ("local", "KINASE_LOCAL"), ("env", "KINASE_ENV")]


def leaf_commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_aws_facing_command_ends_with_the_target_options():
    commands = leaf_commands(typer.main.get_command(app))
    last = {path: [(p.name, p.envvar) for p in c.params[-4:]] for path, c in commands if any(p.name == "profile" for p in c.params)}
    assert {"deploy", "stream put", "fleet up", "dlq purge", "run-task", "watch", "bootstrap"} <= set(last)
    assert not {path: options for path, options in last.items() if options != TARGET_OPTIONS}


def probe_app(seen: list) -> typer.Typer:
    probe = typer.Typer()

    @probe.command()
    @with_target
    def run(count: int = 1, *, target: Target) -> None:
        seen.append((count, target))

    return probe


def test_the_command_gets_the_target_its_options_make(tmp_path):
    seen: list = []
    result = CliRunner().invoke(
        probe_app(seen),
        ["--count", "2", "--profile", "ops", "--region", "eu-west-1"],
        env={"KINASE_HOME": str(tmp_path), "KINASE_ENV": "prod"},
    )
    assert result.exit_code == 0, result.output
    assert seen == [(2, Target(profile="ops", region="eu-west-1", local=False, env="prod"))]

    seen.clear()
    assert CliRunner().invoke(probe_app(seen), ["--local", "--env", "ci"], env={"KINASE_HOME": str(tmp_path)}).exit_code == 0
    assert seen == [(1, Target(local=True, env="ci"))]


def test_flags_not_given_come_from_the_environments_last_deploy(tmp_path, monkeypatch):
    monkeypatch.setenv("KINASE_HOME", str(tmp_path))
    placement.record("far", "123456789012", "ap-southeast-2", "prod-profile")
    seen: list = []
    result = CliRunner().invoke(probe_app(seen), ["--env", "far"], env={"AWS_PROFILE": None, "AWS_REGION": None})
    assert result.exit_code == 0, result.output
    assert seen == [(1, Target(profile="prod-profile", region="ap-southeast-2", env="far"))]


def test_one_name_for_the_json_option_and_for_the_target_in_every_command_module():
    """`--json` is the parameter `json_` and a target is `target` everywhere, so a reader of one command reads them all."""
    import ast
    from pathlib import Path

    import kinase_cli.commands

    json_names = {p.name for _, c in leaf_commands(typer.main.get_command(app)) for p in c.params if "--json" in p.opts}
    assert json_names == {"json_"}
    misnamed = []
    for source in sorted(Path(kinase_cli.commands.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.FunctionDef):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg in ("t", "tgt") or (ast.unparse(arg.annotation or ast.Constant("")) == "Target" and arg.arg != "target"):
                        misnamed.append(f"{source.name}:{node.name}({arg.arg})")
    assert not misnamed

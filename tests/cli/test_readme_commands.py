"""The README's two commands are the ones CI and the demo really run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make_recipe(target: str) -> list[str]:
    """The commands `make -n TARGET` would run, with prerequisites assumed built."""
    out = subprocess.run(
        ["make", "-n", "-o", "setup", "-o", ".venv/.installed", "-o", "node_modules/.installed", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_readme_shows_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands.*?```sh\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command_from_nothing():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    recipe = subprocess.run(["make", "-n", "-B", "setup"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "-m venv .venv" in recipe and "pip install -e '.[dev]'" in recipe and "npm ci" in recipe


def test_make_targets_run_kinase_demo_and_pytest():
    assert any(line.endswith("kinase demo") for line in make_recipe("demo"))
    assert any("-m pytest" in line for line in make_recipe("test"))

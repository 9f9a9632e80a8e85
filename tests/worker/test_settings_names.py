"""The worker settings table is the only place that spells a worker variable's name (issue: shape for growth)."""

from __future__ import annotations

import ast

from support.cli import ROOT
from worker.settings import SETTINGS

NAMES = {s.name for s in SETTINGS} - {"KINASE_ENV"}  # also the CLI's own --env variable, with the same meaning
TREES = ("kinase_cli", "worker", "infra", "bench")


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def literals_naming_a_setting() -> list[str]:
    found = []
    for top in TREES:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path == ROOT / "worker" / "settings.py" or "cdk.out" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            docs = _docstrings(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                    named = sorted(n for n in NAMES if n in node.value)
                    if named:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {', '.join(named)}")
    return found


def test_no_worker_variable_name_is_spelled_outside_the_settings_table():
    assert literals_naming_a_setting() == []


def test_the_check_sees_a_spelled_name(tmp_path, monkeypatch):
    probe = ROOT / "bench" / "_probe_settings_name.py"
    probe.write_text(f'VALUE = "{SETTINGS[0].name}=x"\n')
    try:
        assert any("_probe_settings_name.py" in line for line in literals_naming_a_setting())
    finally:
        probe.unlink()

"""Commands are thin and stand side by side: what two commands share lives in kinase_cli/workflows/ (or below).

Read from the source with ast, so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast

from support.cli import ROOT

COMMANDS = ROOT / "kinase_cli" / "commands"
WORKFLOWS = ROOT / "kinase_cli" / "workflows"


def imported_modules(path) -> set[str]:
    """Every module `path` imports, as dotted names (`from a.b import c` gives a.b and a.b.c)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path.name}: relative import; the project spells imports in full")
    return found


def command_modules() -> dict[str, object]:
    return {f"kinase_cli.commands.{p.stem}": p for p in sorted(COMMANDS.glob("*.py")) if p.stem != "__init__"}


def test_no_command_module_imports_another():
    modules = command_modules()
    assert len(modules) >= 10, sorted(modules)
    crossing = {name: sorted(m for m in imported_modules(path) if m in modules and m != name) for name, path in modules.items()}
    assert not {k: v for k, v in crossing.items() if v}, crossing


def test_workflows_do_not_reach_up_into_commands():
    for path in sorted(WORKFLOWS.glob("*.py")):
        upward = sorted(m for m in imported_modules(path) if m == "kinase_cli.commands" or m.startswith("kinase_cli.commands."))
        assert not upward, f"{path.name} imports {upward}"


def test_the_reader_sees_imports_inside_functions(tmp_path):
    """The check is not blind: a command importing another inside a function is found."""
    source = tmp_path / "probe.py"
    source.write_text("def run():\n    from kinase_cli.commands.stacks import deploy\n    import kinase_cli.commands.tasks\n")
    assert {"kinase_cli.commands.stacks", "kinase_cli.commands.stacks.deploy", "kinase_cli.commands.tasks"} <= imported_modules(source)

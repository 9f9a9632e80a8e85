"""No import circles in worker/ or kinase_cli/: every module can be read from the ones below it.

A circle hidden by an import inside a function is still a circle (the two modules cannot be
understood, tested or moved apart), so the imports are read from the source with ast, those inside
functions included, as tests/cli/test_layering.py reads them.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from support.cli import ROOT

PACKAGES = ("worker", "kinase_cli")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports (`from a import b` names a.b when that is a module, else a)."""
    paths = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.level == 0, f"{path}: relative import; the project spells imports in full"
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    targets.add(child if child in paths else node.module)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (its modules, the first repeated at the end), or None."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_no_import_circle_in_the_worker_or_the_cli():
    graph = import_graph(ROOT)
    assert len(graph) > 100 and "worker.pipeline" in graph and "kinase_cli.main" in graph
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_detector_finds_a_circle_hidden_by_an_import_inside_a_function(tmp_path):
    package = tmp_path / "worker"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from worker.b import helper\n")
    (package / "b.py").write_text("def helper():\n    from worker import c\n")
    (package / "c.py").write_text("import worker.d\n")
    (package / "d.py").write_text("")
    graph = import_graph(tmp_path, ("worker",))
    assert graph["worker.a"] == {"worker.b"} and graph["worker.b"] == {"worker.c"} and cycle(graph) is None
    (package / "d.py").write_text("def late():\n    from worker.a import nothing\n")
    found = cycle(import_graph(tmp_path, ("worker",)))
    assert found is not None and set(found) == {"worker.a", "worker.b", "worker.c", "worker.d"}

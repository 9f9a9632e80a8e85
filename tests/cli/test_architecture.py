"""docs/ARCHITECTURE.md's "where each piece lives" table checked against the tree, both ways.

Every path a row names exists, and every module of the worker, the CLI and the tests' shared support
is named by a row, so a moved file or a new module without a row fails here instead of leaving the
map wrong for the next reader.
"""

import re
from itertools import product
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"

# Folders whose modules a row may name by the folder alone (one module per command group).
NAMED_AS_FOLDER = {"kinase_cli/commands/"}

PATH_TOKEN = re.compile(r"^[\w.{},<>/-]+$")
MODULE = re.compile(r"\.(py|json|md|yaml)$")


def rows() -> list[tuple[str, str]]:
    """(piece, where) of each row of the table under "## Where each piece lives"."""
    section = DOC.read_text().split("## Where each piece lives", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [tuple(line.strip().strip("|").rsplit("|", 1)) for line in lines[2:]]


def expand(token: str) -> list[str]:
    """`a/{b,c}.py` → `a/b.py`, `a/c.py` (brace groups as a shell expands them)."""
    parts = re.split(r"\{([^{}]*)\}", token)
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(combo) for combo in product(*choices)]


def tokens(cell: str) -> list[str]:
    return [t for t in re.findall(r"`([^`]+)`", cell) if PATH_TOKEN.match(t)]


def named_paths(piece: str, where: str) -> list[str]:
    """The repository paths a row names: the where column's paths, and each bare module name of
    either column (`kinds.py`) inside the where column's folder that holds it."""
    paths = [p for t in tokens(where) if "/" in t for p in expand(t)]
    folders = [p for p in paths if p.endswith("/")] or [""]
    for name in (t for t in tokens(piece) + tokens(where) if "/" not in t and MODULE.search(t)):
        for candidate in expand(name):
            paths.append(next((f + candidate for f in folders if (ROOT / f / candidate).exists()), folders[0] + candidate))
    return paths


def all_named() -> list[str]:
    return [path for piece, where in rows() for path in named_paths(piece, where)]


def exists(path: str) -> bool:
    if "<" in path:
        return any(ROOT.glob(re.sub(r"<[^>]*>", "*", path)))
    return (ROOT / path).exists()


def modules() -> list[str]:
    """Every module of worker/ and kinase_cli/, tests/support/ and each area's conftest."""
    found = [
        *ROOT.glob("worker/**/*.py"),
        *ROOT.glob("kinase_cli/**/*.py"),
        *ROOT.glob("tests/support/*.py"),
        *ROOT.glob("tests/*/conftest.py"),
    ]
    return sorted(str(p.relative_to(ROOT)) for p in found if p.name not in ("__init__.py", "__main__.py"))


def test_the_table_is_found_and_names_paths():
    assert len(rows()) > 20
    assert "worker/layout.py" in all_named()
    assert {"kinase_cli/ui/console.py", "kinase_cli/ui/helptext.py"} <= set(all_named())


def test_named_paths_expand_braces_and_folders():
    piece = "kinds (`KINDS`, `kinds.py`), `python -m worker`, `aws/target.py` in the text"
    where = "`worker/sources/` (`mkv.py`), `a/{b,c}_{d,e}.py`, `Tail`"
    assert named_paths(piece, where) == [
        "worker/sources/",
        "a/b_d.py",
        "a/b_e.py",
        "a/c_d.py",
        "a/c_e.py",
        "worker/sources/kinds.py",
        "worker/sources/mkv.py",
    ]


def test_a_placeholder_matches_any_name():
    assert exists("worker/stages/<stage>.py")
    assert not exists("worker/stages/<stage>.nothing")


def test_every_named_path_exists():
    missing = [path for path in all_named() if not exists(path)]
    assert missing == [], f"ARCHITECTURE.md names paths that are not in the tree: {missing}"


def test_every_module_is_named_by_a_row():
    named = set(all_named())
    folders = {path for path in named if path.endswith("/") and path in NAMED_AS_FOLDER}
    unnamed = [m for m in modules() if m not in named and not any(m.startswith(f) for f in folders)]
    assert unnamed == [], f"modules without a row in ARCHITECTURE.md's 'Where each piece lives': {unnamed}"

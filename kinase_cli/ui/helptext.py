"""Help that names values, not Python types.

Typer 0.2x prints a type beside every parameter in `--help`: `<bool>` beside flags (which take no
value), `<str>`, `<list[str]>`, `<int range>`. Typer has no setting for it and an argument's type
cannot be renamed per parameter, so the one method that renders it is replaced here, once, for the
whole CLI: flags show nothing, a parameter with a metavar shows that (`--save DIR`), the others
show click's plain words (`TEXT`, `INTEGER`, `FLOAT`, `PATH`); choices and ranges keep their detail.
tests/cli/test_cli_help.py checks every command's help for leftover `<...>` types.
"""

from __future__ import annotations

import re

from typer import core

WORDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH", "file": "FILE", "directory": "DIR"}
_TYPE = re.compile(r"^<(?:list\[)?(\w+)(?: range)?\]?>$")


def value_name(param, ctx) -> str | None:
    """What `--help` shows beside a parameter: None for a flag, else its metavar or a plain word for its type."""
    if isinstance(param, core.TyperOption):
        if param.is_flag:
            return None
        if param.metavar is not None:
            return param.metavar
    elif param.metavar is not None:
        return None  # an argument's metavar is already its name in the first column
    shown = core._TyperParameter.display_type(param, ctx)
    match = _TYPE.match(shown)
    if not match:
        return shown  # choices (`a|b|c`), tuples, datetimes: the detail is the point
    word = WORDS.get(match[1].lower(), match[1].upper())
    return f"{word}..." if param.nargs != 1 or shown.startswith("<list[") else word


def install() -> None:
    core.TyperOption.display_type_rich = value_name
    core.TyperArgument.display_type_rich = value_name

"""The one confirmation rule for commands that delete or move data.

Ask on a terminal; with no terminal to ask on (a pipe, CI), refuse unless `--yes` was given, so a
script never deletes on an answer it did not mean to give (a "y" left in a pipe, an empty stdin).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from kinase_cli.ui.errors import KinaseError


def confirm(question: str | Callable[[], str], yes: bool) -> None:
    """Return when the operator agreed (or passed --yes); otherwise raise the one-line refusal.

    A callable question is called only when there is someone to ask: one that must look something up
    (what `destroy` would delete) costs no AWS call when the answer is a refusal or --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise KinaseError("not confirmed: no terminal to ask on", "pass --yes to go ahead without asking")
    if not typer.confirm(question() if callable(question) else question, default=False, err=True):
        raise KinaseError("not confirmed", "nothing was changed")

"""The one confirmation rule (kinase_cli/ui/confirm.py): ask on a terminal; with no terminal, refuse unless --yes."""

from __future__ import annotations

import io

import pytest

from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from support.cli import assert_one_line_error, kinase


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer", ["y\n", "n\n", ""])
def test_destroy_without_a_terminal_refuses_in_one_line_whatever_the_pipe_holds(answer):
    """Refused before any AWS call: even a "y" waiting in a pipe is not a confirmation."""
    proc = kinase("destroy", "--region", "eu-west-1", input=answer, timeout=120)
    assert_one_line_error(proc, "not confirmed", "no terminal", "--yes")


def test_on_a_terminal_the_answer_decides(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    confirm("Delete everything?", yes=False)
    assert "Delete everything?" in capsys.readouterr().err  # the question goes to stderr, stdout stays data

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    with pytest.raises(KinaseError, match="not confirmed"):
        confirm("Delete everything?", yes=False)


@pytest.mark.parametrize("stdin", [io.StringIO(""), Terminal("n\n")], ids=["no terminal", "a terminal that would say no"])
def test_yes_never_asks(monkeypatch, capsys, stdin):
    """--yes goes ahead without a question: none is printed, none is looked up, nothing is read."""
    monkeypatch.setattr("sys.stdin", stdin)
    looked_up = []
    confirm(lambda: looked_up.append(True) or "Delete everything?", yes=True)
    assert looked_up == [] and stdin.tell() == 0
    assert capsys.readouterr() == ("", "")

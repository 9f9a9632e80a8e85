"""`kinase destroy` asks about the streams it would delete and untag, and looks them up only when someone is asked."""

from __future__ import annotations

import io

import pytest

from kinase_cli.ui.confirm import confirm
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows.deploy import DestroyPlan


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_question_lists_the_streams_to_delete_and_to_untag():
    plan = DestroyPlan(streams=["kinase-dev-cam1", "kinase-dev-cam2"], adopted=["lobby-camera-07"])
    question = plan.question(["kinase-dev-network", "kinase-dev-compute"])
    assert question.splitlines() == [
        "Delete kinase-dev-network, kinase-dev-compute and the frames, results and video they hold?",
        "  streams to delete (2): kinase-dev-cam1, kinase-dev-cam2",
        "  adopted streams to untag and keep (1): lobby-camera-07",
    ]
    assert DestroyPlan(streams=[], adopted=[]).question(["s"]).count("\n") == 0


def test_a_question_to_look_up_is_looked_up_only_on_a_terminal(monkeypatch, capsys):
    asked = []

    def question() -> str:
        asked.append(True)
        return "Delete kinase-dev-cam1?"

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    with pytest.raises(KinaseError, match="no terminal"):
        confirm(question, yes=False)
    confirm(question, yes=True)
    assert asked == []
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    confirm(question, yes=False)
    assert asked == [True] and "Delete kinase-dev-cam1?" in capsys.readouterr().err

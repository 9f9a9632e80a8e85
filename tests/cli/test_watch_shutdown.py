"""What `watch` says while it waits for open receives at the end: "Ctrl+C again" only after a Ctrl+C."""

from __future__ import annotations

import io
import queue
import threading

import pytest
from rich.console import Console

from kinase_cli.watch.session import Session


class OpenReceive:
    """A receiver whose long poll has not returned: the shutdown waits for it until its deadline."""

    def is_alive(self) -> bool:
        return True


class Acker:
    def close(self) -> None:
        pass


@pytest.mark.parametrize(("interrupted", "note"), [(False, "(Ctrl+C to quit now)"), (True, "(Ctrl+C again to quit now)")])
def test_the_finishing_note_names_ctrl_c_again_only_after_one(interrupted, note):
    session = Session.__new__(Session)
    err = io.StringIO()
    session.err = Console(file=err, width=200)
    session.stop, session.wait_s, session.receivers = threading.Event(), 0, [OpenReceive()]
    session.batches, session.saver, session.holder, session.acker = queue.Queue(), None, None, Acker()
    session._shutdown(interrupted=interrupted)
    assert "finishing: waiting up to 0s for open receives" in err.getvalue()
    assert note in err.getvalue()

"""`kinase` in a real terminal: a tmux pane the test reads back as its screen and sends keys to.

Each terminal has a private tmux server (`-L`): a shared one may size new windows to another
client's terminal. The window size is fixed (manual) so the screen is the size the test asked for.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from support.cli import KINASE, ROOT
from support.poll import until


class Terminal:
    def __init__(self, session: str):
        self.session = session
        self.tmux = ["tmux", "-L", session, "-f", "/dev/null"]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.tmux, *args], capture_output=True, text=True, check=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def title(self) -> str:
        return self.run("display-message", "-p", "-t", self.session, "#{pane_title}")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def wait_for(self, *patterns: str) -> str:
        """The screen once it matches every pattern (a capture can land mid-redraw, so poll for all of them)."""
        seen = [""]

        def matched() -> str | None:
            seen[0] = self.screen()
            return seen[0] if all(re.search(p, seen[0]) for p in patterns) else None

        return until(matched, lambda: f"{patterns!r} all on screen:\n{seen[0]}", timeout=90)


@contextmanager
def terminal(session: str, *args: str, size: tuple[int, int], env: dict[str, str]) -> Iterator[Terminal]:
    """`kinase ARGS` in a `size` (columns, lines) window with `env` set; the shell then prints `exit=<code>`."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for this test (apt-get install tmux)")
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in {"KINASE_HOME": os.environ["KINASE_HOME"], **env}.items())
    command = f"cd {shlex.quote(str(ROOT))} && env {assignments} {shlex.join([*KINASE, *args])}; echo exit=$?; sleep 600"
    term = Terminal(f"{session[:40]}-{os.getpid()}")  # the tmux socket is machine-wide: another test run may use the name
    width, height = str(size[0]), str(size[1])
    term.run("new-session", "-d", "-s", term.session, "-x", width, "-y", height, command)
    try:
        term.run("set-option", "-t", term.session, "window-size", "manual")
        term.run("resize-window", "-t", term.session, "-x", width, "-y", height)
        yield term
    finally:
        subprocess.run([*term.tmux, "kill-server"], capture_output=True)

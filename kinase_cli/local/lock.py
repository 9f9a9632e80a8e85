"""One command at a time changes an environment's local fleet or the local stack.

Two `kinase fleet up --local` started together would both find no fleet and both start one; two
`local up` would both start servers. Each such command holds an exclusive `fcntl.flock` on a file
under `<KINASE_HOME>/local/` while it works: `fleet-<env>.lock` per environment's fleet,
`stack.lock` for the local stack. The kernel drops the lock when its holder exits, even when
killed, so no stale lock outlives a crash. The holder writes its pid and command into the file, so
a second command, after waiting `WAIT_S` for the first to finish, refuses with one line naming it.
A process that holds a lock may take it again (a workflow calling another one, e.g. `push-image`
rolling the fleet).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kinase_cli import paths
from kinase_cli.ui.errors import KinaseError

WAIT_S = 10.0  # long enough for a quick command (`fleet status`-sized work), short enough to tell the user soon
POLL_S = 0.2
STACK = "stack"

_held: dict[str, int] = {}  # lock name -> depth, for the locks this process holds


def fleet(env: str) -> str:
    return f"fleet-{env}"


def _command() -> str:
    """The command taking the lock, as the user typed it (`kinase fleet up`)."""
    import click

    context = click.get_current_context(silent=True)
    if context is not None:
        return context.command_path
    return "kinase " + " ".join(a for a in sys.argv[1:3] if not a.startswith("-"))


def _holder(handle) -> dict:
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except ValueError:
        return {}


@contextmanager
def exclusive(name: str, what: str, wait: float = WAIT_S) -> Iterator[None]:
    """Hold lock `name` (`fleet(env)` or `STACK`) while the block runs; `what` names what it protects in a refusal."""
    import fcntl

    if _held.get(name):
        _held[name] += 1
        try:
            yield
        finally:
            _held[name] -= 1
        return
    path = paths.local_dir() / f"{name}.lock"
    handle = open(path, "a+")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(handle)
                    command = holder.get("command") or "kinase command"
                    raise KinaseError(
                        f"another `{command}` is changing {what} (pid {holder.get('pid', '?')})",
                        "wait for it to finish, then run this again",
                    ) from None
                time.sleep(POLL_S)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": _command()}))
        handle.flush()
        _held[name] = 1
        try:
            yield
        finally:
            _held.pop(name, None)
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()

"""kinase_cli/local/lock.py: one holder at a time, named in the refusal; released by the kernel when the holder dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kinase_cli import paths
from kinase_cli.local import lock
from kinase_cli.ui.errors import KinaseError
from support.cli import ROOT

HOLD = textwrap.dedent(
    """
    import sys, click
    from kinase_cli.local import lock
    with click.Context(click.Command("down"), info_name="kinase fleet down"), lock.exclusive(lock.fleet("dev"), "x"):
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.fixture
def holder(kinase_home):
    """Another process holding environment dev's fleet lock until its stdin closes (or it is killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_second_holder_waits_then_refuses_naming_the_first(holder):
    with pytest.raises(KinaseError) as refused, lock.exclusive(lock.fleet("dev"), "environment dev's fleet", wait=0.5):
        pytest.fail("the lock was held by another process")
    assert str(refused.value) == f"another `kinase fleet down` is changing environment dev's fleet (pid {holder.pid})"
    with lock.exclusive(lock.fleet("other"), "environment other's fleet", wait=0.5):
        pass  # another environment's fleet has its own lock


def test_the_lock_is_free_once_its_holder_is_killed(holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with lock.exclusive(lock.fleet("dev"), "environment dev's fleet", wait=5):
        assert json.loads((paths.local_dir() / f"{lock.fleet('dev')}.lock").read_text())["pid"] == os.getpid()


def test_the_holder_may_take_its_lock_again(kinase_home):
    """A workflow that calls another one (push-image rolling the fleet) does not wait for itself."""

    def inner() -> str:
        with lock.exclusive(lock.STACK, "the local stack", wait=0.5):
            return "taken again"

    with lock.exclusive(lock.STACK, "the local stack", wait=0.5):
        assert inner() == "taken again"

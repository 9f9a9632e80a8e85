"""Ctrl-C (SIGINT to the process group, as a terminal sends it) or SIGTERM at random moments of every
long-running command: it ends, without a traceback, and `watch` never deletes a message it did not show.

The moments are drawn from a seeded generator (KINASE_TEST_SEED to replay a run) and cover start-up
(imports, reading the stack outputs) as well as the steady state; each command is interrupted several
times. A command that cannot end cleanly is ended by its exit watchdog (kinase_cli/interrupts.py)
and says so on stderr; the timeouts below only keep a hung test from hanging the suite.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from kinase_cli.workflows.samples import shapes_video
from support.cli import KINASE, ROOT
from support.messages import frame
from support.ops import aws_env, newest_task_definition, put_image
from worker import contract

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("KINASE_TEST_SEED") or random.SystemRandom().randrange(1 << 30))
REPEATS = 4


def moments(start: float, end: float, n: int = REPEATS) -> list[float]:
    rng = random.Random(f"{SEED}-{start}-{end}")
    return sorted(rng.uniform(start, end) for _ in range(n))


def interrupt(argv: list[str], at: float, sig: int = signal.SIGINT, env: dict | None = None) -> tuple[int, str, str]:
    """Start `kinase ARGV`, send `sig` after `at` seconds (to the whole group for SIGINT), wait for the end."""
    proc = subprocess.Popen(
        [*KINASE, *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(at)
    try:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"kinase {' '.join(argv)} still running 120 s after {signal.Signals(sig).name} (seed {SEED}):\n{err}"
        ) from None
    return proc.returncode, out, err


def interpreter_start(err: str) -> bool:
    """A SIGINT that came while Python itself was starting (importing `site`), or before the first line of
    kinase_cli/__main__.py had installed kinase's handler: Python's own default handler prints that, before any
    program code runs (seen under load at 0.02 s); what a command does with an interrupt starts after it."""
    if "init_import_site" in err:
        return True
    frames = [line for line in err.splitlines() if line.strip().startswith('File "')]
    return err.rstrip().endswith("KeyboardInterrupt") and bool(frames) and 'kinase_cli/__main__.py", line 1,' in frames[-1]


def assert_ended_cleanly(code: int, err: str, argv: list[str], at: float, sig: int) -> None:
    where = f"kinase {' '.join(argv)} interrupted at {at:.2f}s (seed {SEED})"
    if sig == signal.SIGINT and interpreter_start(err):
        return
    assert "Traceback" not in err, f"{where}:\n{err}"
    if code == -sig and not err:
        return  # the signal came while the interpreter itself was starting, before any Python ran: ended at once, silently
    assert code >= 0, f"{where}: killed by signal {-code}\n{err}"  # once kinase runs, a handler ends it: never the default death


def test_logs_follow_ends_on_sigint_or_sigterm_at_any_moment(deployed_stack):
    argv = ["logs", "--follow", "--since", "1m"]
    env = {**aws_env(), "KINASE_POLL_SECONDS": "0.2"}
    for i, at in enumerate(moments(0.0, 4.0)):
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        code, _, err = interrupt(argv, at, sig, env)
        assert_ended_cleanly(code, err, argv, at, sig)


def test_watch_ends_at_any_moment_and_deletes_only_what_it_showed(fresh):
    total = 0
    shown: set[int] = set()
    for i, at in enumerate(moments(0.0, 5.0)):
        batch = [frame(fresh.bucket, total + n, ["person"]) for n in range(30)]
        fresh.send([contract.dumps(m) for m in batch])
        total += len(batch)
        argv = ["watch", "--local", "--json"]
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        code, out, err = interrupt(argv, at, sig)
        assert_ended_cleanly(code, err, argv, at, sig)
        shown |= {json.loads(line)["frame_index"] for line in out.splitlines()}
        visible, in_flight = fresh.depth(fresh.queue)
        deleted = total - visible - in_flight
        assert deleted <= len(shown), f"{deleted} deleted but only {len(shown)} shown (seed {SEED})"


@pytest.mark.parametrize("mode", ["--wait", "--follow"])
def test_run_task_wait_or_follow_ends_on_an_interrupt(deployed_stack, mode):
    definition = newest_task_definition(deployed_stack)
    ref = next(c["image"] for c in definition["containerDefinitions"] if c["name"] == deployed_stack["ContainerName"])
    if "@" not in ref:
        put_image(deployed_stack, ref.rsplit(":", 1)[1], "interrupts")
    argv = ["run-task", mode]
    env = {**aws_env(), "KINASE_POLL_SECONDS": "5"}
    for i, at in enumerate(moments(0.0, 4.0)):
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        code, _, err = interrupt(argv, at, sig, env)
        assert_ended_cleanly(code, err, argv, at, sig)


def test_stream_put_loop_ends_on_an_interrupt(deployed_stack, tmp_path):
    video = tmp_path / "clip.mp4"
    shapes_video(video, frames=60, fps=15, size=(160, 120), seed=3)
    argv = ["stream", "put", str(video), "--local", "--loop", "--realtime"]
    for i, at in enumerate(moments(0.0, 5.0)):
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        code, _, err = interrupt(argv, at, sig)
        assert_ended_cleanly(code, err, argv, at, sig)


def test_demo_ends_on_an_interrupt_and_leaves_no_server_running(tmp_path):
    """Interrupted while it starts the local stack, bootstraps or deploys: it stops what it started."""
    from support.cli import free_port, kinase

    for i, at in enumerate(moments(0.5, 25.0, n=2)):
        home = tmp_path / f"home-{i}"
        argv = ["demo", "--port", str(free_port()), "--kvs-port", str(free_port())]
        try:
            code, _, err = interrupt(argv, at, env={"KINASE_HOME": str(home)})
            assert_ended_cleanly(code, err, argv, at, signal.SIGINT)
            state = home / "local" / "state.json"
            if state.exists():  # interrupted before any server was recorded as started, or stopping it failed
                servers = json.loads(state.read_text())
                pids = [servers[name]["pid"] for name in ("moto", "kvs") if name in servers]
                alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/cmdline", "rb").read()]
                assert not alive, f"demo interrupted at {at:.2f}s left servers running (seed {SEED}):\n{err}"
        finally:
            kinase("local", "down", env={"KINASE_HOME": str(home)}, timeout=120)

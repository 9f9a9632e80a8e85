"""Ctrl-C and `kill` end every kinase command within a few seconds, whatever it is doing.

Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to be. Raised
inside a library between taking a lock and the `try` that releases it (urllib3's connection pool
queue, logging), it leaves the lock held, and the cleanup that runs at exit (urllib3 closes its
pools from a finalizer) then waits on that lock forever: the command "ignores" Ctrl-C. A blocking
call that does not return (a socket read with botocore's 60 s timeout) delays it just as well.

So:
- `install()` (at start-up) makes SIGTERM and SIGHUP behave like SIGINT and arms a watchdog on the
  first signal: if the process has not exited `GRACE_S` seconds later, it exits hard (status 130).
  A second signal exits at once.
- `Stop` is for long-running loops (`logs --follow`, `watch`): inside it a signal only sets an
  event that the loop checks between steps, so no exception lands inside a library call; the
  watchdog still bounds the wait for the step in progress.
- An interrupt kinase handled ends with status 130, never by a signal: CPython 3.11 marks a
  KeyboardInterrupt raised inside code run by `exec()` of a string (dataclasses and namedtuple
  build their methods that way while modules import) as unhandled even when it is caught, and
  then ends the process by SIGINT after the cleanup (bpo-1054041's exit-by-SIGINT, for uncaught
  ^C). `install()` registers an exit hook that clears that mark after a signal kinase received.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading

GRACE_S = float(os.environ.get("KINASE_EXIT_GRACE_S") or 10)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODE = 130

_armed = threading.Event()


def arm_watchdog() -> None:
    """Exit hard `GRACE_S` seconds from now unless the process has ended by then; a second call exits now."""
    if _armed.is_set():
        _hard_exit("interrupted again: exiting now")
    _armed.set()

    def watchdog() -> None:
        threading.Event().wait(GRACE_S)
        _hard_exit(f"still running {GRACE_S:g}s after the interrupt: exiting now")

    threading.Thread(target=watchdog, name="kinase-exit-watchdog", daemon=True).start()


def _hard_exit(why: str) -> None:
    try:
        sys.stderr.write(f"\n{why}\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_CODE)


def _raise(signum, frame) -> None:
    arm_watchdog()
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt (the commands' cleanup runs) and arm the watchdog."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    atexit.unregister(_exit_with_status)
    atexit.register(_exit_with_status)


def _exit_with_status() -> None:
    """At exit, after a signal: the status kinase chose (130 when it handled the interrupt), not death by SIGINT."""
    if not _armed.is_set():
        return
    import ctypes

    try:
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except ValueError:  # an interpreter without the mark (it moved in 3.12)
        pass


class Stop:
    """`with Stop() as stop:` a signal sets `stop` (and arms the watchdog) instead of raising.

    `stop.wait(seconds)` sleeps until the next step or the signal, whichever comes first.
    Outside the main thread (in-process tests) no handler is installed and the event is only set
    by `set()`.
    """

    def __init__(self):
        self.event = threading.Event()
        self._previous: dict = {}

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        arm_watchdog()
        self.event.set()

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)

"""What both entry points (`python -m worker`, `python -m worker.fleet`) set up in their process: quiet
libraries and stopping on signals. Below both, so neither entry point imports the other."""

from __future__ import annotations

import logging
import signal
import threading


def quiet_libraries() -> None:
    """The AWS and video libraries log every retry and probe at INFO; the worker's own lines must stand out."""
    for noisy in ("botocore", "boto3", "urllib3", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_on_signals(logger: logging.Logger, doing: str, *signums: signal.Signals) -> threading.Event:
    """An event the first of `signums` sets: the loops check it and stop where they can flush and checkpoint.

    A closed terminal (SIGHUP) stops as cleanly as SIGTERM where it is listed."""
    stop = threading.Event()

    def on_signal(signum, _frame):
        logger.info("%s received: %s", signal.Signals(signum).name, doing)
        stop.set()

    for signum in signums:
        signal.signal(signum, on_signal)
    return stop

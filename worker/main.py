"""Entry point of the worker container: settings from the environment, signals, exit codes.

Exit 0 when the source is done, KINASE_MAX_FRAMES is reached, a live stream stays idle for
KINASE_IDLE_EXIT seconds, or on SIGTERM/SIGINT/SIGHUP (after flushing and checkpointing); 1 on a fatal
error; 2 on invalid settings. Failures are one `error: ...` log line.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from worker import settings as settings_module

log = logging.getLogger("kinase.worker")


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


def main(env=None) -> int:
    try:
        settings = settings_module.load(env)
    except settings_module.SettingsError as exc:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
        log.error("error: %s", exc)
        return 2
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_libraries()
    stop = stop_on_signals(log, "stopping, flushing, checkpointing", signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    from worker.aws import FatalError
    from worker.detector import DetectorError
    from worker.pipeline import Worker
    from worker.sources import SourceError

    try:
        return Worker(settings, stop=stop).run()
    except (FatalError, DetectorError, SourceError) as exc:
        log.error("error: %s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

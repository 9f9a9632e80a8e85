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


def main(env=None) -> int:
    try:
        settings = settings_module.load(env)
    except settings_module.SettingsError as exc:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
        log.error("error: %s", exc)
        return 2
    logging.basicConfig(level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "libav"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("%s received: stopping, flushing, checkpointing", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # a closed terminal: stop as cleanly as on SIGTERM

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

"""Entry point of the worker container: settings from the environment, signals, exit codes.

Exit 0 when the source is done, KINASE_MAX_FRAMES is reached, a live stream stays idle for
KINASE_IDLE_EXIT seconds, or on SIGTERM/SIGINT/SIGHUP (after flushing and checkpointing); 1 on a fatal
error; 2 on invalid settings. Failures are one `error: ...` log line.
"""

from __future__ import annotations

import logging
import signal
import sys

from worker import settings as settings_module
from worker.process import quiet_libraries, stop_on_signals

log = logging.getLogger("kinase.worker")


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

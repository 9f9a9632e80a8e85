"""The rules in force for a worker: read at start, then looked for every KINASE_RULES_POLL seconds.

`kinase rules apply` stores a new version in the frames bucket (worker/rules.py); a running worker,
one-off or fleet, picks it up here without a restart (issue 24: within 10 s; the default poll is
5 s) and logs the version it uses. S3 is asked with the last ETag, so an unchanged rules file costs
a 304. A stored version that is not valid, or S3 not answering, keeps the rules in force and is
logged once per change of cause: the worker never runs without rules it had.

One instance serves every stream of a worker (the fleet's streams share it); each stream's
`analyse` stage compares `version` with the one it uses and takes `rules_for(stream)` when it moved.
"""

from __future__ import annotations

import logging
import threading

from worker import aws
from worker import rules as rules_format
from worker.retry import error_code

log = logging.getLogger("kinase.worker.rules")


class RulesInForce:
    def __init__(self, s3, bucket: str, poll_s: float):
        self.s3, self.bucket, self.poll_s = s3, bucket, poll_s
        self.current: rules_format.Current | None = None
        self._problem = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def version(self) -> int:
        """0 while no rules were ever applied."""
        current = self.current
        return current.version if current is not None else 0

    def rules_for(self, stream_name: str) -> rules_format.StreamRules:
        current = self.current
        return current.rules.rules_for(stream_name) if current is not None else rules_format.NO_RULES

    def refresh(self, patience: float | None = None) -> None:
        """One look at the stored rules, transient errors retried for `patience` seconds (default: until the next
        look is due); the version in force changes only for a valid newer document."""

        def fetch() -> rules_format.Current | rules_format.RulesError | None:
            try:
                return rules_format.fetch_current(self.s3, self.bucket, known=self.current)
            except rules_format.RulesError as exc:  # not worth retrying: reported below
                return exc

        try:
            found = aws.retry(fetch, what="reading the rules", give_up_after=patience or max(self.poll_s, 1.0))
        except Exception as exc:  # S3 not answering, or access denied: the rules in force stay
            self._report(f"could not read the rules ({error_code(exc) or exc}); keeping version {self.version}")
            return
        if isinstance(found, rules_format.RulesError):
            self._report(f"the stored rules are not valid; keeping version {self.version}: {found}")
            return
        self._problem = ""
        if found is not None and found is not self.current:
            self.current = found
            log.info("rules version %d in force (applied %s)", found.version, found.applied_at)

    def start(self, patience: float = 60.0) -> RulesInForce:
        """Read the rules now, then look again every `poll_s` seconds on a daemon thread (0: never again). The first
        read is retried for `patience` seconds: a worker that started without the rules in force would miss events."""
        self.refresh(patience)
        if self.current is None:
            log.info("no rules applied: no lines, zones or alerts (kinase rules apply FILE)")
        if self.poll_s > 0:
            self._thread = threading.Thread(target=self._loop, name="rules", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def _report(self, problem: str) -> None:
        if problem != self._problem:
            self._problem = problem
            log.warning("%s", problem)

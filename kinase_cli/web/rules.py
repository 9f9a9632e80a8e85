"""The rules in force (worker/rules.py's store in the frames bucket) for the web view's overlays.

The tiles draw each stream's lines and zones over its frame, so the page must draw what the workers
apply: the same `current.json`, read at start and again every few seconds (with its ETag, so S3
answers 304 while nothing changed), as often as a worker picks up a new version. A failure is shown
on the page and the last rules read stay drawn.
"""

from __future__ import annotations

import threading

EVERY_S = 10.0


class RulesPoller:
    def __init__(self, s3, bucket: str, hub, every_s: float = EVERY_S):
        self.s3, self.bucket, self.hub, self.every_s = s3, bucket, hub, every_s
        self._thread = threading.Thread(target=self._loop, name="kinase-web-rules", daemon=True)

    def start(self) -> RulesPoller:
        self._thread.start()
        return self

    def _loop(self) -> None:
        from worker.rules import RulesError, fetch_current

        current = None
        while not self.hub.closed.is_set():
            try:
                current = fetch_current(self.s3, self.bucket, known=current)
                self.hub.rules_in_force(current, error=None)
            except RulesError as exc:
                self.hub.rules_in_force(current, error=f"stored rules refused: {'; '.join(exc.errors[:3])}")
            except Exception as exc:
                from kinase_cli.ui.errors import translate

                described = translate(exc)
                self.hub.rules_in_force(current, error=described.line() if described else f"{type(exc).__name__}: {exc}")
            self.hub.closed.wait(self.every_s)

"""Whether a live camera is sending: `camera_offline` after KINASE_CAMERA_OFFLINE_S without media, `camera_online` at its next frame.

The worker's reader reports each frame it reads (`media`), its metrics timer asks `check` about
once a second; each returns True exactly when the event is due, so one outage is one pair of
events. Recorded sources (files, S3 objects) have no camera and never go offline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CameraHealth:
    def __init__(self, offline_s: float, clock: Callable[[], float] = time.monotonic):
        self.offline_s, self.clock = offline_s, clock
        self._last = clock()
        self.offline = False
        self._lock = threading.Lock()

    def media(self) -> bool:
        """A frame arrived; True when the camera was offline (camera_online is due)."""
        with self._lock:
            self._last = self.clock()
            came_back, self.offline = self.offline, False
            return came_back

    def check(self) -> bool:
        """True once when the camera has sent nothing for `offline_s` (camera_offline is due)."""
        with self._lock:
            if self.offline or self.offline_s <= 0 or self.clock() - self._last < self.offline_s:
                return False
            self.offline = True
            return True

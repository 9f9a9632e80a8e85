"""camera_offline / camera_online: one pair of events per outage of a live camera, none for a recorded source."""

from __future__ import annotations

from worker.events.camera_health import CameraHealth


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_offline_and_one_online_per_outage():
    clock = Clock()
    health = CameraHealth(30.0, clock)
    clock.now += 29.9
    assert not health.check()
    clock.now += 0.2
    assert health.check() and health.offline
    clock.now += 100
    assert not health.check()  # still offline: said once
    assert health.media()  # back: camera_online due
    assert not health.media() and not health.check()
    clock.now += 31
    assert health.check()


def test_frames_keep_a_camera_online_and_zero_means_never():
    clock = Clock()
    health = CameraHealth(5.0, clock)
    for _ in range(10):
        clock.now += 4
        assert not health.media()
        assert not health.check()
    never = CameraHealth(0.0, clock)
    clock.now += 10_000
    assert not never.check()

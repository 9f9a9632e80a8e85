"""Events as a worker publishes them (`kinase.event/1`, built by the contract's own builder), for the `kinase events` tests."""

from __future__ import annotations

import time

from worker.events import contract


def event(
    index: int,
    type_: str = "line_crossed",
    *,
    stream: str = "cam-1",
    cls: str = "person",
    line: str = "door",
    zone: str = "bay",
    snapshot_key: str | None = None,
    alert: bool = False,
) -> dict:
    """The `index`th event of a stream: track `index`, seen in frame `index`, a second apart."""
    frame_id = f"{stream}/street.mp4/{index:08d}"
    common = dict(stream_name=stream, time=time.time() - 60 + index, frame_id=frame_id, snapshot_key=snapshot_key, alert=alert)
    if type_ in ("camera_offline", "camera_online"):
        return contract.camera(type_, stream, common["time"])
    obj = dict(track_id=index, cls=cls, conf=0.9, bbox=[0.5, 0.5, 0.2, 0.4])
    if type_ == "line_crossed":
        return contract.build(type=type_, **common, **obj, rule=line, line=line, direction="in", counts={"in": {cls: index + 1}, "out": {}})
    if type_ == "object_appeared":
        return contract.build(type=type_, **common, **obj, rule="appeared", counts={"visible": {cls: 1}})
    extra = {"dwell_s": 12.5} if type_ == "dwell" else {}
    return contract.build(type=type_, **common, **obj, rule=zone, zone=zone, counts={"occupancy": {cls: 1}}, **extra)

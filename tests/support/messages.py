"""The one builder of `kinase.frame/1` messages for tests: a frame of a file source with these classes detected.

Every field `worker.contract.build` takes can be overridden; the frame id follows from the stream and
source unless one is given, as the worker derives it.
"""

from __future__ import annotations

import time

from worker import contract


def frame(bucket: str, index: int, classes: list[str], stream: str = "cam-1", conf: float = 0.8, **fields) -> dict:
    """A message as the worker sends it for frame `index` of `stream`, 0.25 s after the frame was read."""
    now = time.time()
    source = fields.pop("source", {"type": "file", "uri": "/videos/street.mp4", "frame_number": index})
    message = dict(
        bucket=bucket,
        stream_name=stream,
        frame_index=index,
        source=source,
        frame_id=contract.frame_id(stream, source),
        frame_time=now - 0.25,
        width=640,
        height=480,
        model="shapes-yolo11n.onnx",
        inference_ms=20.0,
        detections=[{"class": c, "class_id": 0, "conf": conf, "bbox": [0.5, 0.5, 0.2, 0.2]} for c in classes],
        now=now,
    )
    return contract.build(**(message | fields))

"""Generated media with known ground truth: shapes moving over textured backgrounds.

The same renderer makes the training set of the project's small detector (scripts/train_shapes.py),
the test videos, and the demo video, so every detection can be checked against the truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle")
COLORS = ((40, 40, 220), (40, 200, 40), (220, 120, 30), (200, 40, 200), (30, 200, 220))  # BGR


@dataclass
class Shape:
    cls: int
    color: tuple[int, int, int]
    x: float  # centre, pixels
    y: float
    r: float  # half size, pixels
    vx: float = 0.0
    vy: float = 0.0

    def bbox(self, width: int, height: int) -> list[float]:
        """Normalised [x_center, y_center, w, h], clipped to the image."""
        x0, y0 = max(self.x - self.r, 0), max(self.y - self.r, 0)
        x1, y1 = min(self.x + self.r, width), min(self.y + self.r, height)
        return [(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Smooth coloured noise with some lines: texture, so the detector cannot key on a flat colour."""
    import cv2

    small = rng.integers(60, 200, size=(max(height // 32, 2), max(width // 32, 2), 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    noise = rng.integers(-18, 18, size=img.shape, dtype=np.int16)
    img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(int(c) for c in rng.integers(40, 220, size=3))
        cv2.line(img, p0, p1, color, int(rng.integers(1, 4)))
    return img


def draw(img: np.ndarray, shape: Shape) -> None:
    import cv2

    cx, cy, r = int(round(shape.x)), int(round(shape.y)), int(round(shape.r))
    if shape.cls == 0:
        cv2.circle(img, (cx, cy), r, shape.color, -1, lineType=cv2.LINE_AA)
    elif shape.cls == 1:
        cv2.rectangle(img, (cx - r, cy - r), (cx + r, cy + r), shape.color, -1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
        cv2.fillPoly(img, [pts], shape.color, lineType=cv2.LINE_AA)


def random_shapes(rng: np.random.Generator, width: int, height: int, count: int, moving: bool = False) -> list[Shape]:
    shapes: list[Shape] = []
    for _ in range(count * 10):
        if len(shapes) == count:
            break
        r = float(rng.uniform(0.06, 0.14) * min(width, height))
        x, y = float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r))
        if any(math.hypot(x - s.x, y - s.y) < (r + s.r) * 1.15 for s in shapes):
            continue
        speed = min(width, height) / 120 if moving else 0.0
        angle = float(rng.uniform(0, 2 * math.pi))
        shapes.append(
            Shape(
                int(rng.integers(0, len(CLASSES))),
                COLORS[int(rng.integers(0, len(COLORS)))],
                x,
                y,
                r,
                speed * math.cos(angle),
                speed * math.sin(angle),
            )
        )
    return shapes


def truth(shapes: list[Shape], width: int, height: int) -> list[dict]:
    return [{"class": CLASSES[s.cls], "class_id": s.cls, "bbox": s.bbox(width, height)} for s in shapes]


def shapes_video(
    path: str | Path,
    *,
    frames: int = 60,
    fps: int = 15,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    codec: str = "h264",
    shapes: int = 2,
    gop: int | None = None,
    audio: bool = False,
) -> list[list[dict]]:
    """Write a video of `shapes` moving shapes; returns the ground truth of every frame.

    `gop` sets the key-frame interval (default: one per second), which is the Kinesis Video
    fragment length after `kinase stream put`. `audio` adds an AAC track (a tone) beside the video,
    as a camera with a microphone sends it.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    bg = background(rng, width, height)
    scene = random_shapes(rng, width, height, shapes, moving=True)
    result: list[list[dict]] = []

    def images():
        for _ in range(frames):
            img = bg.copy()
            for s in scene:
                draw(img, s)
            result.append(truth(scene, width, height))
            yield img
            for s in scene:
                s.x += s.vx
                s.y += s.vy
                if not s.r <= s.x <= width - s.r:
                    s.vx, s.x = -s.vx, min(max(s.x, s.r), width - s.r)
                if not s.r <= s.y <= height - s.r:
                    s.vy, s.y = -s.vy, min(max(s.y, s.r), height - s.r)

    write_video(path, images(), fps=fps, size=size, codec=codec, gop=gop, audio=audio)
    return result


def write_video(
    path: str | Path,
    images: Iterable[np.ndarray],
    *,
    fps: int,
    size: tuple[int, int],
    codec: str = "h264",
    gop: int | None = None,
    audio: bool = False,
) -> None:
    """Encode BGR images as a video: H.264 without B-frames and a key frame every `gop` frames (default
    one per second), so each Kinesis Video fragment after `kinase stream put` starts decodable."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec in ("h264", "libx264"):
            stream.options = {"g": str(gop or fps), "bf": "0", "preset": "veryfast", "crf": "23"}
        tone = _Tone(container) if audio else None
        for index, img in enumerate(images):
            if tone:
                tone.until((index + 1) / fps)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if tone:
            tone.close()


class _Tone:
    """An AAC track of a 440 Hz tone, encoded in the encoder's own frame size as the video advances."""

    RATE = 16000

    def __init__(self, container):
        self.container = container
        self.stream = container.add_stream("aac", rate=self.RATE, layout="mono")
        self.samples = 0

    def until(self, seconds: float) -> None:
        import av

        size = self.stream.codec_context.frame_size or 1024
        while self.samples < seconds * self.RATE:
            t = (self.samples + np.arange(size)) / self.RATE
            frame = av.AudioFrame.from_ndarray(
                (0.2 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)[None, :], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = self.RATE, self.samples
            self.container.mux(self.stream.encode(frame))
            self.samples += size

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))


def shapes_dataset(root: str | Path, *, train: int = 300, val: int = 60, imgsz: int = 320, seed: int = 0) -> Path:
    """A YOLO-format dataset of still images; returns the data.yaml path."""
    import cv2

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w = h = imgsz
            img = background(rng, w, h)
            scene = random_shapes(rng, w, h, int(rng.integers(1, 4)))
            for s in scene:
                draw(img, s)
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), img)
            lines = [f"{t['class_id']} " + " ".join(f"{v:.6f}" for v in t["bbox"]) for t in truth(scene, w, h)]
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    data.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data

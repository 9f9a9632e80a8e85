"""Boxes, labels (with the track id), and the stream's lines and zones, drawn with OpenCV's built-in Hershey font
(nothing is downloaded at run time). An event's snapshot is its frame's JPEG: the line or zone it is about is on it."""

from __future__ import annotations

import cv2
import numpy as np

PALETTE = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
)


RULES_COLOR = (0, 215, 255)  # BGR amber: lines and zones, apart from the class colours of the boxes


def annotate(image: np.ndarray, detections: list[dict], rules=None) -> np.ndarray:
    """Draw on `image` itself and return it: the frame's pixels are not needed afterwards, and a copy of
    a 640x480 frame costs about as much as the drawing (0.5 ms here, most of it page faults).
    `rules`: the stream's worker.rules.StreamRules, whose lines and zones are drawn under the boxes."""
    out = image
    h, w = out.shape[:2]
    thickness = max(1, round((h + w) / 600))
    scale = max(0.4, (h + w) / 2400)
    if rules is not None:
        _draw_rules(out, rules, thickness, scale)
    for d in detections:
        xc, yc, bw, bh = d["bbox"]
        p1 = (int((xc - bw / 2) * w), int((yc - bh / 2) * h))
        p2 = (int((xc + bw / 2) * w), int((yc + bh / 2) * h))
        color = PALETTE[d.get("class_id", 0) % len(PALETTE)]
        cv2.rectangle(out, p1, p2, color, thickness, cv2.LINE_AA)
        label = f"{d['class']} #{d['track_id']} {d['conf']:.2f}" if "track_id" in d else f"{d['class']} {d['conf']:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = p1[1] - th - base - 2 if p1[1] - th - base - 2 >= 0 else p1[1]
        cv2.rectangle(out, (p1[0], top), (p1[0] + tw + 2, top + th + base + 2), color, -1)
        cv2.putText(out, label, (p1[0] + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def _draw_rules(out: np.ndarray, rules, thickness: int, scale: float) -> None:
    h, w = out.shape[:2]

    def px(point) -> tuple[int, int]:
        return int(point[0] * w), int(point[1] * h)

    for zone in rules.zones:
        polygon = np.array([px(p) for p in zone.polygon], dtype=np.int32)
        cv2.polylines(out, [polygon], True, RULES_COLOR, thickness, cv2.LINE_AA)
        _name(out, zone.name, px(zone.polygon[0]), scale, thickness)
    for line in rules.lines:
        a, b = px(line.points[0]), px(line.points[1])
        cv2.line(out, a, b, RULES_COLOR, thickness + 1, cv2.LINE_AA)
        cv2.circle(out, px(line.in_side), thickness + 2, RULES_COLOR, -1, cv2.LINE_AA)  # the "in" side
        _name(out, line.name, a, scale, thickness)


def _name(out: np.ndarray, name: str, at: tuple[int, int], scale: float, thickness: int) -> None:
    text = name.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    cv2.putText(out, text, (at[0] + 3, at[1] + int(20 * scale) + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, RULES_COLOR, thickness, cv2.LINE_AA)


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()

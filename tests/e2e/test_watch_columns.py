"""The live table's figures an operator checks first: inference ms, drops and gaps, one row per stream.

Run at 80 columns, the width of a default terminal: the per-frame rows must keep their detections readable.
"""

from __future__ import annotations

import re

import pytest

from support.messages import frame
from support.terminal import terminal
from worker import contract

pytestmark = pytest.mark.e2e


def message(bucket: str, index: int, stream: str, inference_ms: float, **accounting) -> str:
    """A frame whose worker reports its inference time and, optionally, drops and gaps since its previous message."""
    body = frame(bucket, index, ["person"], stream=stream)
    body.update(inference_ms=inference_ms, **accounting)
    return contract.dumps(body)


def row(screen: str, stream: str, header: str) -> dict[str, str]:
    """The cells of `stream`'s row in the table whose header line starts with `header`, by column name."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("┃") and line.strip("┃ ").startswith(header))
    names = [c.strip() for c in lines[start].strip("┃").split("┃")]
    for line in lines[start + 1 :]:
        cells = [c.strip() for c in line.strip("│").split("│")]
        if len(cells) == len(names) and stream in cells:
            return dict(zip(names, cells))
        if line.startswith("└"):
            break
    raise AssertionError(f"no row for {stream} under {header!r}:\n{screen}")


def test_live_table_shows_inference_drops_gaps_and_a_row_per_stream(fresh, tmp_path):
    with terminal(f"kinase-columns-{tmp_path.name}", "watch", "--local", size=(180, 45), env={"COLUMNS": "80"}) as term:
        first = term.wait_for(r"frames\s+0\b")
        assert re.search(r"^worker\s+inference -\s+drops -\s+gaps -", first, re.M), first
        assert not re.search(r"^\s*streams", first, re.M)

        fresh.send([message(fresh.bucket, 1, "lobby-cam", 23.4, frames_dropped=2, gaps=0)])
        one = term.wait_for(r"frames\s+1\b")
        assert re.search(r"^worker\s+inference 23 ms\s+drops 2\s+gaps 0\s*$", one, re.M), one
        assert row(one, "lobby-cam", "time")["detections"] == "person×1"
        assert not re.search(r"^\s*streams", one, re.M), "one stream: no per-stream rows"

        fresh.send(
            [
                message(fresh.bucket, 2, "lobby-cam", 25.0, frames_dropped=3, gaps=1),
                message(fresh.bucket, 1, "dock-cam", 61.0),
                message(fresh.bucket, 2, "dock-cam", 59.0),
            ]
        )
        several = term.wait_for(r"frames\s+4\b")
        assert re.search(r"^worker\s+inference (25|59|61) ms\s+drops 5\s+gaps 1\s*$", several, re.M), several
        assert re.search(r"^\s*streams", several, re.M), several
        # Per stream: frames, fps, inference (its newest frame's; SQS does not keep order within a batch), p50, p95, lag, drops (summed), gaps (summed); unknown shows as -.
        lobby, dock = row(several, "lobby-cam", "stream"), row(several, "dock-cam", "stream")
        assert (lobby["frames"], lobby["inference"], lobby["drops"], lobby["gaps"]) == ("2", "25 ms", "5", "1")
        assert (dock["frames"], dock["drops"], dock["gaps"]) == ("2", "-", "-") and dock["inference"] in ("59 ms", "61 ms")
        assert lobby["p50"] == dock["p95"] == "250 ms"
        term.keys("C-c")
        ended = term.wait_for(r"exit=\d+")
        assert "watch ended (interrupted): 4 frames" in ended and "exit=0" in ended

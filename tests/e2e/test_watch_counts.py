"""`kinase watch` shows each stream's running counts (frames' `counts`) and the track ids of detections.

The counts are the newest frame's by its own time and index, not by arrival; the live table keeps them
readable at 80 columns; the summary names them per stream; line, zone and class names are inert text.
"""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from kinase_cli.watch import view
from kinase_cli.watch.stats import Stats, format_tracked, tallies
from support.cli import kinase
from support.hostile import ESC_CLEAR, MARKUP, OSC_TITLE
from support.messages import frame
from support.terminal import terminal
from worker import contract


def counts(door_in: dict, door_out: dict, bay: dict) -> dict:
    return {"lines": {"door": {"in": door_in, "out": door_out}}, "zones": {"bay": {"occupancy": bay}}}


def tracked(bucket: str, index: int, stream: str, tracks: list[tuple[str, int | None]], **fields) -> dict:
    """A frame whose detections carry these (class, track id) pairs; None: not confirmed by tracking, no id."""
    message = frame(bucket, index, [cls for cls, _ in tracks], stream=stream, **fields)
    for item, (_, track) in zip(message["summary"], tracks):
        if track is not None:
            item["track_id"] = track
    return message


# --- the pieces ------------------------------------------------------------------------------------


def test_counts_are_the_newest_frames_by_frame_time_not_by_arrival():
    stats = Stats()
    newest = frame("b", 7, ["person"], counts=counts({"person": 3}, {"person": 1}, {"car": 1}))
    older = frame("b", 6, ["person"], frame_time=contract.parse_iso(newest["frame_time"]) - 1, counts=counts({"person": 2}, {}, {}))
    for message in (newest, older):
        stats.frame(message, message["summary"])
    assert stats.counts() == {"cam-1": newest["counts"]}
    # Same frame time (a burst read at once): the higher index is the newer frame.
    later = frame("b", 8, ["person"], frame_time=contract.parse_iso(newest["frame_time"]), counts=counts({"person": 4}, {"person": 1}, {}))
    stats.frame(later, later["summary"])
    uncounted = frame("b", 9, ["person"])  # a frame without counts (no rules) leaves them as they were
    stats.frame(uncounted, uncounted["summary"])
    assert stats.summary()["counts"] == {"cam-1": later["counts"]}


def test_tallies_total_each_direction_and_zone_and_treat_missing_parts_as_zero():
    found = tallies({"lines": {"door": {"in": {"person": 4, "car": 1}, "out": {"person": 3}}, "gate": {}}, "zones": {"bay": {}}})
    assert [(t.kind, t.name, t.into, t.out, t.inside, t.by_class) for t in found] == [
        ("line", "door", 5, 3, None, "in person×4 car×1 out person×3"),
        ("line", "gate", 0, 0, None, "-"),
        ("zone", "bay", None, None, 0, "-"),
    ]


def test_detections_name_their_confirmed_tracks():
    detections = [
        {"class": "person", "track_id": 15},
        {"class": "person", "track_id": 12},
        {"class": "person"},
        {"class": "car", "track_id": 3},
    ]
    assert format_tracked(detections) == "person×3 #12 #15 car×1 #3"
    assert format_tracked([{"class": "dog"}]) == "dog×1"
    assert format_tracked([]) == "-"


def test_hostile_names_in_counts_are_shown_as_inert_text():
    stats = Stats()
    hostile = f"{MARKUP}{ESC_CLEAR}{OSC_TITLE}"
    message = frame("b", 1, ["person"], counts={"lines": {hostile: {"in": {hostile: 2}, "out": {}}}, "zones": {}})
    stats.frame(message, message["summary"])
    screen = Console(record=True, width=200, height=40, force_terminal=True)
    screen.print(view.live(stats, "results"))
    text = screen.export_text()
    assert "\x1b" not in text and "in [/x][link=https://evil.example/]" in text  # Rich would fail on `[/x]` parsed as markup
    summary = view.summary_text(stats.summary(), "done").plain
    assert "\x1b" not in summary
    assert f"counts cam-1: {MARKUP}\\x1b[2J\\x1b[H\\x1b]0;pwned-title\\x07 in 2 out 0" in summary


# --- end to end: the real command on the local stack -------------------------------------------


def counts_rows(screen: str) -> dict[tuple[str, str], list[str]]:
    """The counts table's rows by (stream, line/zone): its cells split on runs of spaces."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^stream\s+line/zone\s+in\s+out\s+inside\s+by class", line))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith(("┏", "┃")):
            break
        cells = re.split(r"\s+", line.strip(), maxsplit=5)
        rows[(cells[0], cells[1])] = cells[2:]
    return rows


@pytest.mark.e2e
def test_live_table_shows_the_newest_counts_and_track_ids_at_80_columns(fresh, tmp_path):
    door = tracked(
        fresh.bucket,
        9,
        "lobby-cam",
        [("person", 12), ("person", 15), ("car", None)],
        counts=counts({"person": 4, "car": 1}, {"person": 3}, {"car": 2}),
    )
    stale = frame(
        fresh.bucket,
        8,
        ["person"],
        stream="lobby-cam",
        frame_time=contract.parse_iso(door["frame_time"]) - 2,
        counts=counts({"person": 1}, {}, {}),
    )
    # Drawn at 80 columns in a wider pane, as test_watch_columns does: tmux garbles redraws of lines that fill its width exactly.
    with terminal(f"kinase-counts-{tmp_path.name}", "watch", "--local", size=(180, 45), env={"COLUMNS": "80"}) as term:
        fresh.send([contract.dumps(door)])
        term.wait_for(r"frames\s+1\b")
        fresh.send([contract.dumps(stale)])
        # Every row asserted on is waited for: a capture can land mid-redraw.
        screen = term.wait_for(
            r"frames\s+2\b", r"lobby-cam\s+bay", r"lobby-cam\s+door", r"│\s+8 │ person×1\s+│", r"│\s+9 │ person×2 #12 #15 car×1\s+│"
        )
        assert max(len(line) for line in screen.splitlines()) <= 80
        assert counts_rows(screen) == {
            ("lobby-cam", "door"): ["5", "3", "-", "in person×4 car×1 out person×3"],
            ("lobby-cam", "bay"): ["-", "-", "2", "car×2"],
        }, screen
        term.keys("C-c")
        ended = term.wait_for(r"exit=\d+")
    summary = " ".join(ended.split())  # the summary wraps at 80 columns too
    assert "counts lobby-cam: door in 5 out 3 (in person×4 car×1 out person×3), bay inside 2 (car×2)" in summary


@pytest.mark.e2e
def test_json_lines_carry_counts_and_tracks_and_the_summary_names_the_counts(fresh):
    sent = [
        tracked(fresh.bucket, i, "cam-1", [("person", 7), ("person", None)], counts=counts({"person": i}, {}, {"person": 1}))
        for i in range(1, 5)
    ]
    fresh.send([contract.dumps(m) for m in reversed(sent)])

    proc = kinase("watch", "--local", "--json", "--count", "4", timeout=120)

    assert proc.returncode == 0, proc.stderr
    got = sorted((json.loads(line) for line in proc.stdout.splitlines()), key=lambda m: m["frame_index"])
    assert got == sent
    assert "counts cam-1: door in 4 out 0 (in person×4), bay inside 1 (person×1)" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0)

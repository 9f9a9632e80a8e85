"""The web view's tiles draw each stream's lines and zones in force and show its running counts.

The rules come from the environment's store (what the workers apply), read at start and again every
few seconds; the counts from the newest frame that carried them. Names from rules and messages are
text on the page, never markup.
"""

from __future__ import annotations

import io
import json

import pytest

from kinase_cli.web.hub import Hub
from kinase_cli.web.rules import RulesPoller
from support.messages import frame
from support.poll import until
from support.web import WebWatch
from worker import contract, rules

HOSTILE = '<img src=x onerror="window.__pwned=1">'


def document(line_x: float, line_name: str = "door") -> dict:
    """Rules with one line at x = line_x ("in" to the right) and a zone; the dock camera has its own, zone-less entry."""
    door = {"name": line_name, "points": [[line_x, 0.1], [line_x, 0.9]], "in_side": [0.9, 0.5]}
    return {
        "schema": rules.SCHEMA_ID,
        "streams": {
            "*": {"lines": [door], "zones": [{"name": HOSTILE, "polygon": [[0.1, 0.6], [0.4, 0.6], [0.4, 0.9], [0.1, 0.9]]}]},
            "dock-cam": {"lines": [{**door, "name": "ramp"}]},
        },
    }


def counts(door_in: int, door_out: int, inside: int) -> dict:
    return {
        "lines": {"door": {"in": {"person": door_in}, "out": {"person": door_out}}},
        "zones": {HOSTILE: {"occupancy": {HOSTILE: inside}}},
    }


class NoFrames:
    def get_object(self, **_):
        raise KeyError("no frames in these tests")


def current(doc: dict, version: int) -> rules.Current:
    return rules.Current(version=version, applied_at="2026-12-07T20:00:00.000Z", doc=doc, rules=rules.build(doc), etag=f'"{version}"')


# --- the hub -------------------------------------------------------------------------------------


def test_each_tile_carries_its_streams_lines_zones_counts_and_tracks():
    hub = Hub(NoFrames(), "b", "results")
    try:
        hub.rules_in_force(current(document(0.5), 3), error=None)
        newest = frame("b", 5, ["person", "person"], stream="lobby-cam", counts=counts(4, 1, 2))
        newest["summary"][1]["track_id"] = 12
        older = frame(
            "b", 4, ["person"], stream="lobby-cam", frame_time=contract.parse_iso(newest["frame_time"]) - 1, counts=counts(1, 0, 0)
        )
        older["summary"][0]["track_id"] = 9
        for message in (newest, older, frame("b", 1, ["car"], stream="dock-cam", width=1280, height=720)):
            hub.frame(message)
        state = json.loads(json.dumps(hub.snapshot()))  # what the page gets
        assert state["rules_version"] == 3 and state["rules_error"] is None
        lobby, dock = state["streams"]
        assert lobby["overlay"] == {
            "lines": [{"name": "door", "points": [[0.5, 0.1], [0.5, 0.9]], "in_side": [0.9, 0.5]}],
            "zones": [{"name": HOSTILE, "polygon": [[0.1, 0.6], [0.4, 0.6], [0.4, 0.9], [0.1, 0.9]]}],
        }
        assert lobby["counts"] == [
            {"kind": "line", "name": "door", "in": 4, "out": 1, "inside": None, "by_class": "in person×4 out person×1"},
            {"kind": "zone", "name": HOSTILE, "in": None, "out": None, "inside": 2, "by_class": f"{HOSTILE}×2"},
        ], "the newest frame's counts, though an older one arrived after it"
        assert lobby["tracks"] == [["person", [9]]] and lobby["size"] == [640, 480], "the detections of the frame shown last"
        assert dock["overlay"] == {"lines": [{"name": "ramp", "points": [[0.5, 0.1], [0.5, 0.9]], "in_side": [0.9, 0.5]}], "zones": []}
        assert dock["counts"] == [] and dock["size"] == [1280, 720]
    finally:
        hub.close()


def test_rules_are_read_at_start_picked_up_when_applied_and_kept_when_the_store_breaks(monkeypatch):
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="frames")
        hub = Hub(NoFrames(), "frames", "results")
        try:
            RulesPoller(s3, "frames", hub, every_s=0.05).start()
            hub.frame(frame("frames", 1, ["person"], stream="lobby-cam"))
            assert hub.snapshot()["streams"][0]["overlay"] == {"lines": [], "zones": []}, "no rules applied: nothing drawn"
            rules.publish(s3, "frames", document(0.5), "2026-12-07T20:00:00.000Z")
            until(lambda: hub.snapshot()["rules_version"] == 1)
            rules.publish(s3, "frames", document(0.7, "gate"), "2026-12-07T20:01:00.000Z")
            until(lambda: hub.snapshot()["rules_version"] == 2)
            assert [line["name"] for line in hub.snapshot()["streams"][0]["overlay"]["lines"]] == ["gate"]
            s3.put_object(Bucket="frames", Key=rules.CURRENT_KEY, Body=io.BytesIO(b"{not json"))
            until(lambda: hub.snapshot()["rules_error"] is not None)
            state = hub.snapshot()
            assert state["rules_error"].startswith("stored rules refused: rules/current.json") and state["rules_version"] == 2
            assert [line["name"] for line in state["streams"][0]["overlay"]["lines"]] == ["gate"], "the last good rules stay drawn"
        finally:
            hub.close()


# --- in the browser ------------------------------------------------------------------------------


def tile(stream: str) -> str:
    return f"[...document.querySelectorAll('.tile')].find(t => t.querySelector('.stream').textContent === {json.dumps(stream)})"


def marks(stream: str) -> str:
    return f"(() => {{ const t = {tile(stream)}; return t ? [...t.querySelectorAll('.mark')].map(m => m.textContent) : []; }})()"


@pytest.mark.e2e
@pytest.mark.slow
def test_tiles_draw_the_lines_and_zones_in_force_with_their_counts(fresh, chromium):
    s3 = fresh.client("s3")
    first = rules.publish(s3, fresh.bucket, document(0.5), "2026-12-07T20:00:00.000Z")
    newest = frame(fresh.bucket, 9, ["person"], stream="lobby-cam", counts=counts(5, 3, 2))
    stale = frame(
        fresh.bucket, 8, ["person"], stream="lobby-cam", frame_time=contract.parse_iso(newest["frame_time"]) - 2, counts=counts(1, 0, 0)
    )
    fresh.send([contract.dumps(newest), contract.dumps(stale), contract.dumps(frame(fresh.bucket, 1, ["car"], stream="dock-cam"))])
    watch = WebWatch()
    try:
        chromium.goto(watch.url)
        chromium.wait_for(f"document.getElementById('rules').textContent === 'v{first}'")
        lobby = chromium.wait_for(f"(() => {{ const m = {marks('lobby-cam')}; return m.length === 2 && m; }})()")
        assert lobby == [f"{HOSTILE}: 2 inside", "door: in 5 · out 3"]
        assert chromium.wait_for(f"{marks('dock-cam')}.length === 1 && {marks('dock-cam')}")[0] == "ramp: -"
        geometry = chromium.evaluate(
            f"(() => {{ const t = {tile('lobby-cam')};"
            " return [[...t.querySelectorAll('svg.shapes line')].map(l => ['x1', 'y1', 'x2', 'y2'].map(a => l.getAttribute(a))),"
            " [...t.querySelectorAll('svg.shapes polygon')].map(p => p.getAttribute('points')),"
            " t.querySelector('svg.shapes').getAttribute('viewBox')]; })()"
        )
        assert geometry == [[["0.5", "0.1", "0.5", "0.9"]], ["0.1,0.6 0.4,0.6 0.4,0.9 0.1,0.9"], "0 0 1 1"]
        listed = chromium.evaluate(f"[...{tile('lobby-cam')}.querySelectorAll('.counts li')].map(li => li.textContent)")
        assert listed == ["door" + "in 5 · out 3" + "in person×5 out person×3", HOSTILE + "2 inside" + f"{HOSTILE}×2"]
        assert chromium.evaluate("window.__pwned === undefined && document.querySelectorAll('img[src=\"x\"]').length === 0")

        # A newer frame moves the counts; rules applied while the page is open are drawn without a reload.
        fresh.send([contract.dumps(frame(fresh.bucket, 10, ["person"], stream="lobby-cam", counts=counts(6, 3, 1)))])
        chromium.wait_for(f"{marks('lobby-cam')}.includes('door: in 6 · out 3')")
        second = rules.publish(s3, fresh.bucket, document(0.7, "gate"), "2026-12-07T20:01:00.000Z")
        chromium.wait_for(f"document.getElementById('rules').textContent === 'v{second}'", timeout=120)
        chromium.wait_for(f"{marks('lobby-cam')}.includes('gate: -')")
        assert chromium.evaluate(f"{tile('lobby-cam')}.querySelector('svg.shapes line').getAttribute('x1')") == "0.7"
        assert chromium.evaluate(f"{tile('lobby-cam')}.querySelector('.counts li').textContent").startswith("door"), (
            "counts of a line the rules no longer draw are still listed"
        )
    finally:
        assert watch.stop() == 0, "".join(watch.stderr)
    assert fresh.depth(fresh.queue) == (0, 0)

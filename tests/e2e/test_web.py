"""`kinase watch --web` in a real headless Chromium against the local stack.

The page must show one tile per stream with its latest annotated frame loaded, numbers that move
as frames arrive, every message string as text (a hostile class name runs no script), and a
non-loopback bind must refuse requests without the token printed at start.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support.cli import ROOT, assert_one_line_error, kinase
from support.messages import frame
from support.poll import until
from support.web import WebWatch
from worker.metrics import NAMESPACE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.__pwned=1">'
SCREENSHOT = ROOT / "docs" / "web-view.png"


def _frames_dir() -> Path | None:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "assets"


def upload_annotated(stack, message: dict, photo: str) -> None:
    """Put an annotated JPEG where the message says the frame is, as the worker would."""
    import cv2
    import numpy as np

    from worker.annotate import annotate, jpeg

    assets = _frames_dir()
    image = cv2.imread(str(assets / photo)) if assets is not None else None
    if image is None:
        image = np.full((480, 640, 3), (90, 60, 30), dtype=np.uint8)
    image = cv2.resize(image, (message["width"], message["height"]))
    body = jpeg(annotate(image, message["summary"]))
    stack.client("s3").put_object(Bucket=stack.bucket, Key=message["key"], Body=body, ContentType="image/jpeg")


def send_frames(stack, stream: str, indexes: range, classes: list[str], photo: str) -> None:
    messages = [frame(stack.bucket, i, classes, stream=stream) for i in indexes]
    for m in messages:
        upload_annotated(stack, m, photo)
    stack.send([json.dumps(m) for m in messages])


def tile_frames(stream: str) -> str:
    return f"""(() => {{
        const t = [...document.querySelectorAll('.tile')].find(t => t.querySelector('.stream').textContent === {json.dumps(stream)});
        return t ? Number(t.querySelector('.value.frames').textContent) : 0;
    }})()"""


def test_page_shows_a_live_tile_per_stream_and_message_strings_as_text(fresh, chromium, tmp_path):
    send_frames(fresh, "lobby-cam", range(1, 4), ["person", "person"], "bus.jpg")
    send_frames(fresh, "dock-cam", range(1, 3), ["person", HOSTILE], "zidane.jpg")
    watch = WebWatch()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", watch.url), watch.url
        chromium.goto(watch.url)
        chromium.wait_for("document.querySelectorAll('.tile').length === 2")
        chromium.wait_for(f"{tile_frames('lobby-cam')} === 3 && {tile_frames('dock-cam')} === 2")
        loaded = chromium.wait_for(
            "(() => { const imgs = [...document.querySelectorAll('.tile .frame img')];"
            " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0) && imgs.map(i => i.naturalWidth); })()"
        )
        assert loaded == [640, 640]
        assert chromium.evaluate("document.getElementById('dlq').textContent") == "0"

        # The hostile class name is on the page as those very characters, and nothing ran.
        names = chromium.evaluate("[...document.querySelectorAll('.class-name')].map(n => n.textContent)")
        assert HOSTILE in names
        assert chromium.evaluate("window.__pwned === undefined")
        assert chromium.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert chromium.evaluate("document.querySelectorAll('.tile .frame img').length") == 2

        # New frames move the numbers without a reload; a third stream gets its own tile.
        before = chromium.evaluate("document.body.dataset.updates")
        for index in range(4, 9):
            send_frames(fresh, "lobby-cam", range(index, index + 1), ["person", "bus"], "bus.jpg")
            chromium.wait_for(f"{tile_frames('lobby-cam')} === {index}")
        # The worker's own counts of what sent no message: its metrics, read from CloudWatch by the CLI.
        yard = [{"Name": "Stream", "Value": "yard-cam"}]
        fresh.client("cloudwatch").put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {"MetricName": "FramesDropped", "Dimensions": yard, "Value": 4, "Unit": "Count"},
                {"MetricName": "Gaps", "Dimensions": yard, "Value": 1, "Unit": "Count"},
                {"MetricName": "FramesGapped", "Dimensions": yard, "Value": 12, "Unit": "Count"},
            ],
        )
        send_frames(fresh, "yard-cam", range(1, 3), ["person"], "zidane.jpg")
        chromium.wait_for("document.querySelectorAll('.tile').length === 3")
        chromium.wait_for(
            "[...document.querySelectorAll('.tile .frame img')].every(i => i.complete && i.naturalWidth > 0)"
            " && document.querySelectorAll('.tile .frame img').length === 3"
        )
        assert chromium.evaluate("document.body.dataset.updates") != before
        yard_tile = "[...document.querySelectorAll('.tile')][2]"
        chromium.wait_for(f"{yard_tile}.textContent.includes('1 (12 frames)')")
        assert chromium.evaluate(f"[...{yard_tile}.querySelectorAll('.stat')].map(s => s.textContent)")[6:] == [
            "drops4",
            "gaps1 (12 frames)",
        ]
        assert "drops and gaps: CloudWatch, last 3 h" in chromium.evaluate(f"{yard_tile}.querySelector('.status').textContent")
        assert chromium.evaluate("document.getElementById('metrics').textContent") == "CloudWatch"
        assert chromium.evaluate("[...document.querySelectorAll('.tile .stream')].map(n => n.textContent)") == [
            "lobby-cam",
            "dock-cam",
            "yard-cam",
        ]
        bus = chromium.evaluate("[...document.querySelectorAll('.tile')][0].querySelector('.classes').textContent")
        assert "person11" in bus and "bus5" in bus
        shot = chromium.screenshot(tmp_path / "web-view.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("KINASE_UPDATE_DOCS"):
            shutil.copyfile(shot, SCREENSHOT)

        # A stream that stops sending keeps its tile, marked quiet; the others stay live.
        chromium.wait_for(
            "(() => { const t = [...document.querySelectorAll('.tile')].find(t => t.querySelector('.stream').textContent === 'dock-cam');"
            " return t.classList.contains('quiet') && t.querySelector('.status').textContent.startsWith('quiet for'); })()",
            timeout=120,
        )
        assert chromium.evaluate("document.querySelectorAll('.tile').length") == 3
    finally:
        assert watch.stop() == 0, "".join(watch.stderr)
    # One consumer: the watcher deleted what it showed, the table saw the same frames.
    assert fresh.depth(fresh.queue) == (0, 0)
    assert "watch ended" in "".join(watch.stderr) and "12 frames" in "".join(watch.stderr)


def test_a_non_loopback_bind_refuses_requests_without_the_printed_token(fresh, chromium):
    watch = WebWatch("--host", "0.0.0.0")
    try:
        match = re.fullmatch(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]{20,})", watch.url)
        assert match, watch.url
        base, token = match.groups()
        for url, headers in ((base, {}), (base + "events", {}), (base + "?token=wrong", {}), (base, {"X-Kinase-Token": "wrong"})):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30)
            assert refused.value.code == 401
        assert urllib.request.urlopen(urllib.request.Request(base, headers={"X-Kinase-Token": token}), timeout=30).status == 200
        chromium.goto(base)
        assert "unauthorized" in chromium.evaluate("document.body.textContent")
        send_frames(fresh, "gate-cam", range(1, 3), ["person"], "bus.jpg")
        chromium.goto(watch.url)
        chromium.wait_for("document.querySelectorAll('.tile .frame img').length === 1")
        chromium.wait_for("document.querySelector('.tile .frame img').naturalWidth > 0")
    finally:
        assert watch.stop() == 0, "".join(watch.stderr)


def test_loopback_view_answers_only_to_a_loopback_host_name(fresh):
    watch = WebWatch()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(watch.url, headers={"Host": "attacker.example:80"}), timeout=30)
        assert refused.value.code == 403
        page = urllib.request.urlopen(watch.url, timeout=30)
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    finally:
        assert watch.stop() == 0, "".join(watch.stderr)


def test_open_hands_the_printed_url_to_the_default_browser(fresh, tmp_path):
    """`--open` goes through Python's webbrowser, which runs $BROWSER first when it is set."""
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    browser.chmod(0o755)
    watch = WebWatch("--open", env={**os.environ, "BROWSER": str(browser)})
    try:
        until(opened.exists, "$BROWSER called", timeout=120, every=0.2)
        assert opened.read_text().splitlines() == [watch.url]
        assert urllib.request.urlopen(watch.url, timeout=30).status == 200
    finally:
        assert watch.stop() == 0, "".join(watch.stderr)


def test_a_port_in_use_is_one_error_line(fresh):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        proc = kinase("watch", "--local", "--web", "--port", str(busy.getsockname()[1]), "--idle-timeout", "1", timeout=120)
    assert_one_line_error(proc, "cannot serve the web view on 127.0.0.1:", "--port")


def test_the_dashboard_deploys_and_its_url_is_in_outputs_and_status(stack):
    url = "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#dashboards/dashboard/kinase-dev"
    assert stack.outputs["DashboardUrl"] == url
    dashboards = stack.client("cloudwatch").list_dashboards()["DashboardEntries"]
    assert "kinase-dev" in [d["DashboardName"] for d in dashboards]  # other tests' environments may have theirs
    body = json.loads(stack.client("cloudwatch").get_dashboard(DashboardName="kinase-dev")["DashboardBody"])
    queue_name = stack.queue.rsplit("/", 1)[1]
    dlq_name = stack.dlq.rsplit("/", 1)[1]
    queues = {row[3] for w in body["widgets"] for row in w.get("properties", {}).get("metrics", []) if row[0] == "AWS/SQS"}
    assert queues == {queue_name, dlq_name}
    status = kinase("status", "--local", "--json", check=True)
    assert json.loads(status.stdout)["data"]["dashboard_url"] == url
    assert url in kinase("status", "--local", check=True, env={"COLUMNS": "300"}).stdout


@pytest.mark.parametrize("args", [("--port", "9000"), ("--host", "0.0.0.0"), ("--open",)])
def test_web_options_without_web_are_one_error_line(args):
    assert_one_line_error(kinase("watch", *args, timeout=60), "belong to the web view", "add --web")

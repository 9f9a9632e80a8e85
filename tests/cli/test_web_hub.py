"""The web view's state (one tile per stream) and its server's guard, without a stack or a browser."""

from __future__ import annotations

import io
import threading

import pytest
from starlette.testclient import TestClient

from kinase_cli.web.hub import Hub
from kinase_cli.web.metrics import MetricsPoller
from kinase_cli.web.server import SECURITY_HEADERS, build_app, is_loopback
from support.messages import frame
from support.poll import until


class FakeS3:
    """Serves a body per key; a key it does not know fails like S3's NoSuchKey."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.fetched = threading.Event()

    def get_object(self, Bucket, Key):
        try:
            body = self.objects[Key]
        except KeyError:
            error = type("ClientError", (Exception,), {})("missing")
            error.response = {"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}}
            error.operation_name = "GetObject"
            raise error from None
        finally:
            self.fetched.set()
        return {"Body": io.BytesIO(body)}


@pytest.fixture
def hub():
    h = Hub(FakeS3({}), "b", "results")
    yield h
    h.close()


def test_a_tile_per_stream_with_counts_accounting_and_series(hub):
    hub.frame(frame("b", 1, ["person", "person"], stream="lobby"))
    hub.frame(frame("b", 2, ["car"], stream="lobby") | {"frames_dropped": 3, "gaps": 1})
    hub.frame(frame("b", 1, [], stream="dock\x1b[2J"))
    state = hub.snapshot()
    assert [s["stream"] for s in state["streams"]] == ["lobby", "dock\\x1b[2J"]
    lobby, dock = state["streams"]
    assert lobby["frames"] == 2 and lobby["frame_index"] == 2
    assert lobby["classes"] == [("person", 2), ("car", 1)] and lobby["latest"] == [("car", 1)]
    assert (lobby["drops"], lobby["gaps"]) == (3, 1)
    assert (dock["drops"], dock["gaps"]) == (None, None), "unknown is not zero"
    assert lobby["inference_ms"] == 20.0 and lobby["latency_ms"] == 250.0
    assert sum(lobby["series"]["fps"]) == 2 and all(v == 250.0 for v in lobby["series"]["latency_ms"])
    assert not lobby["quiet"] and hub.snapshot(now=state["now"] + 60)["streams"][0]["quiet"]


def test_the_filter_of_the_watch_applies_to_the_tiles():
    hub = Hub(FakeS3({}), "b", "results", detections=lambda m: [d for d in m["summary"] if d["class"] == "car"])
    try:
        hub.frame(frame("b", 1, ["person", "car"]))
        assert hub.snapshot()["streams"][0]["classes"] == [("car", 1)]
    finally:
        hub.close()


def test_the_latest_frame_is_fetched_and_a_missing_one_is_reported():
    message = frame("b", 1, ["person"])
    s3 = FakeS3({message["key"]: b"\xff\xd8jpeg"})
    hub = Hub(s3, "b", "results")
    try:
        hub.frame(message)
        until(lambda: hub.snapshot()["streams"][0]["image_version"] == 1)
        assert hub.image(1) == b"\xff\xd8jpeg"
        hub.frame(frame("b", 2, ["person"]))
        until(lambda: hub.snapshot()["streams"][0]["image_error"] is not None)
        tile = hub.snapshot()["streams"][0]
        assert "NoSuchKey" in tile["image_error"] and tile["image_version"] == 1, "the last good frame stays"
    finally:
        hub.close()


def test_a_frame_not_uploaded_counts_but_keeps_the_last_picture():
    """key null (the worker's KINASE_UPLOAD kept the JPEG out of S3): nothing to fetch, no error."""
    message = frame("b", 1, ["person"])
    hub = Hub(FakeS3({message["key"]: b"\xff\xd8jpeg"}), "b", "results")
    try:
        hub.frame(message)
        until(lambda: hub.snapshot()["streams"][0]["image_version"] == 1)
        hub.frame({**frame("b", 2, ["person"]), "key": None})
        tile = hub.snapshot()["streams"][0]
        assert tile["frames"] == 2 and tile["image_version"] == 1 and tile["image_error"] is None
        assert hub.image(1) == b"\xff\xd8jpeg"
    finally:
        hub.close()


def test_loopback_mode_answers_only_to_loopback_host_names(hub):
    client = TestClient(build_app(hub, token=None), base_url="http://127.0.0.1:8765")
    page = client.get("/")
    assert page.status_code == 200 and '<section id="tiles">' in page.text
    for name, value in SECURITY_HEADERS.items():
        assert page.headers[name] == value
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/api/state", headers={"host": "evil.example"}).status_code == 403
    assert client.get("/frames/1").status_code == 404


def test_token_mode_refuses_every_data_request_without_the_token(hub):
    hub.frame(frame("b", 1, ["person"]))
    client = TestClient(build_app(hub, token="s3cret-token"), base_url="http://10.0.0.5:8765")
    for path in ("/", "/api/state", "/events", "/frames/1"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"x-kinase-token": "wrong"}).status_code == 401, path
    assert client.get("/api/state?token=s3cret-token").json()["streams"][0]["stream"] == "cam-1"
    assert client.get("/api/state", headers={"x-kinase-token": "s3cret-token"}).status_code == 200
    assert client.get("/api/state", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/app.js").status_code == 200, "the page's own code carries no data"


@pytest.mark.parametrize(
    ("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("10.1.2.3", False)]
)
def test_which_binds_need_a_token(host, loopback):
    assert is_loopback(host) is loopback


def test_drops_and_gaps_come_from_the_workers_metrics_when_messages_carry_none(monkeypatch):
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch")
        yard = [{"Name": "Stream", "Value": "yard"}]
        cloudwatch.put_metric_data(
            Namespace="kinase/worker",
            MetricData=[
                {"MetricName": "FramesDropped", "Dimensions": yard, "Value": 7, "Unit": "Count"},
                {"MetricName": "FramesDropped", "Dimensions": yard, "Value": 2, "Unit": "Count"},
                {"MetricName": "Gaps", "Dimensions": yard, "Value": 1, "Unit": "Count"},
                {"MetricName": "FramesGapped", "Dimensions": yard, "Value": 12, "Unit": "Count"},
                {"MetricName": "FramesDropped", "Dimensions": [{"Name": "Stream", "Value": "other"}], "Value": 5, "Unit": "Count"},
            ],
        )
        hub = Hub(FakeS3({}), "b", "results")
        try:
            MetricsPoller(cloudwatch, hub, every_s=0.05).start()
            hub.frame(frame("b", 1, ["person"], stream="yard"))
            hub.frame(frame("b", 1, ["person"], stream="quiet-cam"))
            until(lambda: [s["worker"] for s in hub.snapshot()["streams"]] == [{"drops": 9, "gaps": 1, "frames_gapped": 12}, {}])
            state = hub.snapshot()
            assert state["metrics_window_s"] == 3 * 3600 and state["metrics_error"] is None
            assert state["streams"][0]["drops"] is None, "what the messages say stays apart"
        finally:
            hub.close()


def test_a_metrics_failure_is_shown_and_the_tiles_keep_working():
    class Denied:
        def get_metric_data(self, **kwargs):
            error = type("ClientError", (Exception,), {})("denied")
            error.response = {"Error": {"Code": "AccessDenied", "Message": "not allowed: cloudwatch:GetMetricData"}}
            error.operation_name = "GetMetricData"
            raise error

    hub = Hub(FakeS3({}), "b", "results")
    try:
        MetricsPoller(Denied(), hub, every_s=0.05).start()
        hub.frame(frame("b", 1, ["person"], stream="yard") | {"frames_dropped": 2})
        until(lambda: hub.snapshot()["metrics_error"] is not None)
        state = hub.snapshot()
        assert "AccessDenied in GetMetricData" in state["metrics_error"]
        assert state["streams"][0]["drops"] == 2 and state["streams"][0]["worker"] == {}
    finally:
        hub.close()

"""Clips (issue 25 item 1, partial): the range asked of GetClip and a refused clip reported, not raised past the caller."""

from __future__ import annotations

import pytest

from support.kvs import endpoint
from worker import layout
from worker.events import clips
from worker.rules import Clip


@pytest.fixture(scope="module")
def kvs_endpoint(tmp_path_factory):
    with endpoint(tmp_path_factory.mktemp("kvs-home")) as kvs:
        yield kvs


def test_the_window_starts_one_fragment_before_the_lead_in():
    span = clips.window(1000.0, Clip(pre_s=5.0, post_s=3.0), fragment_s=2.0)
    assert (span.start, span.end) == (993.0, 1003.0)


def test_a_clip_is_named_by_its_event():
    assert layout.clip_key("cam-1:line_crossed:42") == "clips/cam-1_line_crossed_42.mp4"


def test_a_clip_of_an_unknown_stream_is_a_clip_failed(kvs_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS_VIDEO", kvs_endpoint.url)
    with pytest.raises(clips.ClipFailed) as failed:
        clips.store_clip(kvs_endpoint.session(), "no-such-stream", "bucket", "e1", clips.Window(0.0, 10.0))
    assert failed.value.code == "ResourceNotFoundException"

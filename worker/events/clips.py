"""Clips around alert events, cut from Kinesis Video's archive (issue 25 item 1, worker part; partial).

Only the fetch-and-store step is here: `window` says which producer-time range to ask GetClip for,
and `store_clip` asks for it and puts the MP4 at layout.clip_key(event_id) in the frames bucket.
Calling it after the post window has been read, the `clip_ready` event and the retention of the
stream are not built yet.

GetClip starts a clip at the first fragment that starts at or after StartTimestamp, so the range
asked for begins one fragment length before event - pre_s to keep the whole lead-in; the fragment
that starts at or before the end is included whole. A refused clip (no retention, no media in
the range) is a `ClipFailed` with AWS's code, for the caller to log and count: a clip never stops
the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from worker import aws, layout
from worker.rules import Clip


class ClipFailed(Exception):
    def __init__(self, event_id: str, code: str, message: str):
        super().__init__(f"clip of {event_id}: {code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Window:
    start: float  # producer time (epoch seconds) asked for
    end: float


def window(event_time: float, clip: Clip, fragment_s: float) -> Window:
    return Window(event_time - clip.pre_s - fragment_s, event_time + clip.post_s)


def store_clip(session, stream: str, bucket: str, event_id: str, span: Window) -> str:
    """GetClip over `span` (producer timestamps) on the GET_CLIP endpoint, stored as the event's clip; its key."""
    control = aws.client(session, "kinesisvideo")
    try:
        endpoint = control.get_data_endpoint(StreamName=stream, APIName="GET_CLIP")["DataEndpoint"]
        archived = aws.client(session, "kinesis-video-archived-media", endpoint_url=endpoint)
        selector = {
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": span.start, "EndTimestamp": span.end},
        }
        body = archived.get_clip(StreamName=stream, ClipFragmentSelector=selector)["Payload"].read()
    except ClientError as err:
        error = err.response.get("Error", {})
        raise ClipFailed(event_id, error.get("Code", "Unknown"), error.get("Message", "")) from err
    key = layout.clip_key(event_id)
    aws.client(session, "s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="video/mp4")
    return key

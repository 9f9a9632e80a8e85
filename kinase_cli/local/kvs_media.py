"""PutMedia and GetMedia for the local Kinesis Video endpoint."""

from __future__ import annotations

import uuid

API_NAMES = (
    "PUT_MEDIA", "GET_MEDIA", "LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL", "GET_DASH_STREAMING_SESSION_URL", "GET_CLIP", "GET_IMAGES",
)
IDLE_SECONDS = 10.0


def request_id() -> str:
    return str(uuid.uuid4())


def put_media(handler) -> None:
    handler.send_error_json(501, "NotImplemented", "PutMedia is coming")
    handler.close_connection = True


def get_media(handler, params: dict) -> None:
    handler.send_error_json(501, "NotImplemented", "GetMedia is coming")

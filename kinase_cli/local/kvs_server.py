"""A local Kinesis Video Streams endpoint: the control plane, the PutMedia / GetMedia media plane, GetClip.

moto has no Kinesis Video media plane, so `kinase local up` runs this beside the moto server; boto3
reaches it through `AWS_ENDPOINT_URL_KINESIS_VIDEO`, and `GetDataEndpoint` answers with this
server's own URL. It speaks the real wire formats (rest-json control calls, chunked Matroska in and
newline-separated JSON acks out for PutMedia, a chunked run of per-fragment Matroska files with the
AWS_KINESISVIDEO_* tags for GetMedia, an MP4 for archived-media GetClip: kvs_clip) and checks SigV4
signatures against the local fake credentials. A test and demo stand-in, not a product: state is in memory and bounded.

    python -m kinase_cli.local.kvs_server --host localhost --port 4567
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kinase_cli.local import kvs_clip, kvs_media
from kinase_cli.local.kvs_store import Store, StoreError
from kinase_cli.local.sigv4 import AuthError, verify

log = logging.getLogger("kinase.kvs")

CONTROL_CALLS = {
    "/createStream": "create_stream",
    "/describeStream": "describe_stream",
    "/listStreams": "list_streams",
    "/deleteStream": "delete_stream",
    "/getDataEndpoint": "get_data_endpoint",
    "/tagStream": "tag_stream",
    "/untagStream": "untag_stream",
    "/listTagsForStream": "list_tags_for_stream",
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: KvsServer

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    # plumbing

    def send_json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", kvs_media.request_id())
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status: int, code: str, message: str) -> None:
        self.send_json(status, {"Message": message}, {"x-amzn-ErrorType": f"{code}:"})

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def url(self) -> str:
        return f"http://{self.headers.get('Host', 'localhost')}{self.path}"

    def authorize(self, body: bytes | None) -> bool:
        try:
            verify(self.command, self.url(), self.headers, body)
            return True
        except AuthError as exc:
            self.send_error_json(HTTPStatus.FORBIDDEN, exc.code, exc.message)
            return False

    # routes

    def do_GET(self):
        if self.path == "/health":
            self.send_json(200, {"status": "ok", "streams": len(self.server.store.streams)})
        else:
            self.send_error_json(404, "UnknownOperationException", f"unknown path {self.path}")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        try:
            if path == "/putMedia":
                if self.authorize(None):
                    kvs_media.put_media(self)
                else:
                    self.close_connection = True
                return
            body = self.read_body()
            if not self.authorize(body):
                return
            params = json.loads(body or b"{}")
            if path == "/getMedia":
                kvs_media.get_media(self, params)
            elif path == "/getClip":
                kvs_clip.get_clip(self, params)
            elif path in CONTROL_CALLS:
                self.send_json(200, getattr(self, CONTROL_CALLS[path])(params))
            else:
                self.send_error_json(404, "UnknownOperationException", f"unknown operation {path}")
        except StoreError as exc:
            self.send_error_json(exc.status, exc.code, exc.message)
        except ValueError as exc:
            self.send_error_json(400, "InvalidArgumentException", f"invalid request: {exc}")

    # control plane

    def create_stream(self, params: dict) -> dict:
        name = params.get("StreamName")
        if not name:
            raise StoreError("InvalidArgumentException", "StreamName is required.")
        stream = self.server.store.create(
            name,
            media_type=params.get("MediaType"),
            retention_hours=params.get("DataRetentionInHours", 0),
            device_name=params.get("DeviceName"),
            kms_key_id=params.get("KmsKeyId"),
        )
        self.server.tags[stream.arn] = dict(params.get("Tags") or {})
        return {"StreamARN": stream.arn}

    def describe_stream(self, params: dict) -> dict:
        return {"StreamInfo": self.server.store.get(params.get("StreamName"), params.get("StreamARN")).info()}

    def list_streams(self, params: dict) -> dict:
        condition = params.get("StreamNameCondition") or {}
        streams = self.server.store.list(condition.get("ComparisonValue"))
        start = int(params.get("NextToken") or 0)
        limit = int(params.get("MaxResults") or 10000)
        page = streams[start : start + limit]
        result = {"StreamInfoList": [s.info() for s in page]}
        if start + limit < len(streams):
            result["NextToken"] = str(start + limit)
        return result

    def delete_stream(self, params: dict) -> dict:
        arn = params.get("StreamARN")
        if not arn:
            raise StoreError("InvalidArgumentException", "StreamARN is required.")
        self.server.store.delete(arn, params.get("CurrentVersion"))
        return {}

    def tag_stream(self, params: dict) -> dict:
        """Tags an environment uses to adopt a camera stream (`kinase stream adopt`); kept by ARN."""
        stream = self.server.store.get(params.get("StreamName"), params.get("StreamARN"))
        self.server.tags.setdefault(stream.arn, {}).update(params.get("Tags") or {})
        return {}

    def untag_stream(self, params: dict) -> dict:
        """`kinase stream rm` of an adopted stream releases it: the environment's tag goes."""
        stream = self.server.store.get(params.get("StreamName"), params.get("StreamARN"))
        for key in params.get("TagKeyList") or []:
            self.server.tags.get(stream.arn, {}).pop(key, None)
        return {}

    def list_tags_for_stream(self, params: dict) -> dict:
        stream = self.server.store.get(params.get("StreamName"), params.get("StreamARN"))
        return {"Tags": dict(self.server.tags.get(stream.arn, {}))}

    def get_data_endpoint(self, params: dict) -> dict:
        if params.get("APIName") not in kvs_media.API_NAMES:
            raise StoreError("InvalidArgumentException", "APIName is missing or not valid.")
        self.server.store.get(params.get("StreamName"), params.get("StreamARN"))
        return {"DataEndpoint": self.server.url}


@dataclass(frozen=True)
class Limits:
    """The limits a test or demo may change from the service's own (kvs_media holds the service's values)."""

    media_idle_seconds: float = kvs_media.IDLE_SECONDS
    getmedia_connections: int = kvs_media.GETMEDIA_CONNECTIONS
    getmedia_calls_per_second: int = kvs_media.GETMEDIA_CALLS_PER_SECOND
    put_max_seconds: float = kvs_media.PUT_MAX_SECONDS
    put_fragments_per_second: int = kvs_media.PUT_FRAGMENTS_PER_SECOND
    max_future_seconds: float = kvs_media.MAX_FUTURE_SECONDS
    max_session_seconds: float = kvs_media.MAX_SESSION_SECONDS
    idle_reset_seconds: float = kvs_media.IDLE_RESET_SECONDS
    clip_max_fragments: int = kvs_clip.MAX_FRAGMENTS
    clip_max_bytes: int = kvs_clip.MAX_BYTES


LIMIT_HELP = {
    "media_idle_seconds": "end a GetMedia response after this long without a new fragment (default 0: never; the service holds it open)",
    "getmedia_connections": "concurrent GetMedia connections per stream; more get ConnectionLimitExceededException",
    "getmedia_calls_per_second": "GetMedia calls per second per stream; more get ClientLimitExceededException",
    "put_max_seconds": "PutMedia maximum connection duration; a fragment after it gets error 4003",
    "put_fragments_per_second": "PutMedia fragments per second per stream; a faster producer is throttled",
    "max_future_seconds": "producer timestamps further ahead of this server's clock get error 4007",
    "max_session_seconds": "end a GetMedia session after this long, at a fragment boundary (the service: about 45 minutes)",
    "idle_reset_seconds": "reset (TCP RST) a GetMedia connection that sent nothing for this long, as a middlebox does (default 0: never)",
    "clip_max_fragments": "GetClip: a clip holds at most this many fragments from its start (the service: 200)",
    "clip_max_bytes": "GetClip: a clip holds at most this many bytes of fragments from its start (the service: 100 MB)",
}


class KvsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, limits: Limits = Limits()):
        super().__init__((host, port), Handler)
        self.url = f"http://{host}:{self.server_address[1]}"
        self.store = Store()
        self.tags: dict[str, dict[str, str]] = {}
        self.limits = limits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvs_server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=4567)
    for limit in fields(Limits):
        flag = "--" + limit.name.replace("_", "-")
        parser.add_argument(flag, type=type(limit.default), default=limit.default, help=LIMIT_HELP[limit.name])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = KvsServer(args.host, args.port, Limits(**{limit.name: getattr(args, limit.name) for limit in fields(Limits)}))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("Kinesis Video local endpoint on %s", server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

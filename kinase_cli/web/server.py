"""The web view's HTTP server: a Starlette app run by uvicorn on a thread beside the watch session.

Loopback only by default, and then only under a loopback Host name (a page elsewhere cannot reach
it by rebinding a DNS name to 127.0.0.1). Any other bind address needs `--host`, and then every
request must carry the token printed at start (`?token=` or an `X-Kinase-Token` / bearer header).
Everything the page loads is served from here (no CDN), under a Content-Security-Policy that
allows only this origin's own files.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import secrets
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from kinase_cli.ui.errors import KinaseError
from kinase_cli.web.hub import Hub
from kinase_cli.web.metrics import MetricsPoller
from kinase_cli.web.rules import RulesPoller

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
EVENT_POLL_S = 0.25
EVENT_KEEPALIVE_S = 2.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PUBLIC = {"/app.js", "/app.css"}  # the page's own code, the same for everyone: no data, no token needed
LOWER_HEADERS = {k.lower() for k in SECURITY_HEADERS}
FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"), "/app.css": ("app.css", "text/css")}


def is_loopback(host: str) -> bool:
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def build_app(hub: Hub, token: str | None) -> Starlette:
    async def page(request: Request) -> Response:
        name, media_type = FILES[request.url.path]
        return FileResponse(STATIC / name, media_type=media_type)

    async def state(request: Request) -> Response:
        return JSONResponse(hub.snapshot())

    async def frame(request: Request) -> Response:
        data = hub.image(request.path_params["tile"])
        if data is None:
            return PlainTextResponse("no frame yet", status_code=404)
        return Response(data, media_type="image/jpeg")

    async def events(request: Request) -> Response:
        async def stream():
            sent, quiet = -1, 0.0
            yield "retry: 1000\n\n"
            while not hub.closed.is_set():
                if hub.version != sent or quiet >= EVENT_KEEPALIVE_S:
                    sent, quiet = hub.version, 0.0
                    yield f"data: {json.dumps(hub.snapshot(), separators=(',', ':'))}\n\n"
                await asyncio.sleep(EVENT_POLL_S)
                quiet += EVENT_POLL_S
                if await request.is_disconnected():
                    return

        return StreamingResponse(stream(), media_type="text/event-stream")

    app = Starlette(
        routes=[
            *(Route(path, page) for path in FILES),
            Route("/api/state", state),
            Route("/events", events),
            Route("/frames/{tile:int}", frame),
        ]
    )
    return Guard(app, token)


class Guard:
    """ASGI middleware: refuses what the bind mode does not allow, adds the security headers to the rest."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        if self.token is None:
            if _host_name(request.headers.get("host", "")).lower() not in LOOPBACK_NAMES:
                return await PlainTextResponse("forbidden: this view answers only to localhost", status_code=403)(scope, receive, send)
        elif scope["path"] not in PUBLIC and not _authorized(request, self.token):
            refusal = PlainTextResponse("unauthorized: pass the token printed by `kinase watch --web` (?token=...)", status_code=401)
            return await refusal(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.decode().lower() not in LOWER_HEADERS]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _authorized(request: Request, token: str) -> bool:
    given = request.query_params.get("token") or request.headers.get("x-kinase-token") or ""
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode(), token.encode())


@dataclass
class WebView:
    """A running server: its URL (with the token when one is required) and how to stop it."""

    url: str
    _server: object
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start(hub: Hub, host: str = "127.0.0.1", port: int = 0) -> WebView:
    """Bind (port 0: any free port), serve on a daemon thread, return once it accepts connections."""
    import uvicorn

    token = None if is_loopback(host) else secrets.token_urlsafe(24)
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bare, port))
    except OSError as exc:
        sock.close()
        raise KinaseError(f"cannot serve the web view on {host}:{port}: {exc.strerror or exc}", "pick another --port or --host") from None
    sock.listen(64)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(hub, token), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="kinase-web", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        threading.Event().wait(0.02)
    if not server.started:
        raise KinaseError(f"the web view on {host}:{bound_port} did not start")
    shown = "127.0.0.1" if bare in ("", "0.0.0.0") else (f"[{bare}]" if family == socket.AF_INET6 else bare)
    if bare == "::":
        shown = "[::1]"
    url = f"http://{shown}:{bound_port}/" + (f"?token={token}" if token else "")
    return WebView(url=url, _server=server, _thread=thread)


@contextmanager
def serving(s3, bucket: str, queue_url: str, *, cloudwatch=None, detections=None, host: str = "127.0.0.1", port: int = 0):
    """A hub and its running server for one watch session; both end with the block.

    With a CloudWatch client, the tiles also show the worker's drops and gaps from its metrics. The
    rules in force are read from the frames bucket, for the tiles' lines and zones.
    """
    hub = Hub(s3, bucket, queue_url.rsplit("/", 1)[-1], detections)
    RulesPoller(s3, bucket, hub).start()
    if cloudwatch is not None:
        MetricsPoller(cloudwatch, hub).start()
    try:
        view = start(hub, host, port)
    except BaseException:
        hub.close()
        raise
    try:
        yield hub, view
    finally:
        hub.close()
        view.stop()

"""A fault-injecting HTTP proxy for the local stack: the outages AWS and networks really have, per service.

Usage (in a test):

    with FaultProxy(media.aws_endpoint) as proxy:      # in front of the moto server (or the KVS endpoint)
        env = {..., "AWS_ENDPOINT_URL": proxy.url}     # the worker talks to the proxy
        proxy.fail("s3", "503", seconds=20)            # every S3 request answers 503 SlowDown for 20 s
        proxy.fail("sqs", "hang")                      # SQS accepts and never answers, until cleared
        proxy.fail("kinesisvideo", "reset", 5)         # connections reset (RST), the open ones at once
        proxy.fail("dynamodb", "503", count=6, code="ThrottlingException", status=400)  # the next 6 requests
        proxy.clear("sqs")                             # or proxy.clear() for every service
        proxy.injected[("s3", "503")]                  # how many requests a fault answered
        proxy.forwarded["s3"]                          # how many it let through

The service of a request is the one its SigV4 credential scope names (`Credential=KEY/DATE/REGION/
SERVICE/aws4_request`, in the Authorization header or a presigned URL): `s3`, `sqs`, `dynamodb`,
`kinesisvideo`, ...; "" for an unsigned request (never faulted unless `fail("", ...)`). Faults
apply per request, so connections kept alive by botocore's pool see them too.

Modes:
- `503`: an error response in the service's own format (S3's XML `SlowDown`; JSON `__type` for the
  JSON protocols: SQS, DynamoDB, Kinesis Video; the query protocol's XML otherwise), 503 unless
  `status` says otherwise, code `code` if given (e.g. `fail("dynamodb", "503", 9,
  code="ThrottlingException", status=400)`), then the connection is closed.
- `reset`: the connection is closed with a TCP RST; open connections of the service are reset when
  the fault starts (a GetMedia body breaks off mid-stream).
- `hang`: the request is read and never answered; responses already streaming stop too (nothing
  more is forwarded while the fault lasts). The connection is closed when the fault ends.

Only this proxy's listening address changes: Kinesis Video media calls go to the data endpoint
that GetDataEndpoint returns, so put the proxy in front of the KVS endpoint to fault them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

MODES = ("503", "reset", "hang")
_CRLF = b"\r\n"


@dataclass
class Fault:
    mode: str
    until: float | None  # time.monotonic() when it ends; None: until cleared
    code: str | None = None
    status: int = 503
    left: int | None = None  # requests it still answers; None: no limit

    def over(self) -> bool:
        """Its time is up (a hung request is then let go)."""
        return self.until is not None and time.monotonic() >= self.until

    def active(self) -> bool:
        """It answers the next request."""
        return not self.over() and self.left != 0


class _Reader:
    """Buffered reads from a socket without makefile(), so that the socket can be closed with an RST."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buf:
            if not self._fill():
                return None
        head, _, self.buf = self.buf.partition(marker)
        return head + marker

    def exactly(self, n: int):
        while n > 0:
            if not self.buf and not self._fill():
                raise ConnectionError("client closed inside a request body")
            data, self.buf = self.buf[:n], self.buf[n:]
            n -= len(data)
            yield data


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def service_of(request_line: str, headers: dict[str, str]) -> str:
    """The service a SigV4-signed request is for, from its credential scope ("" if unsigned)."""
    scope = headers.get("authorization", "").partition("Credential=")[2] or request_line.partition("X-Amz-Credential=")[2]
    parts = scope.replace("%2F", "/").split(",")[0].split("&")[0].split("/")
    return parts[3] if len(parts) >= 5 else ""


def _body(reader: _Reader, headers: dict[str, str]):
    """The raw bytes of a request body (Content-Length or chunked), as they arrive."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            line = reader.until(_CRLF)
            if line is None:
                raise ConnectionError("client closed inside a chunked body")
            yield line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (trailer := reader.until(_CRLF)) not in (None, _CRLF):
                    yield trailer
                yield _CRLF
                return
            yield from reader.exactly(size + 2)
    else:
        yield from reader.exactly(int(headers.get("content-length", "0") or 0))


def error_response(service: str, headers: dict[str, str], fault: Fault) -> bytes:
    """An HTTP error response as `service` writes it (botocore parses it into the error code)."""
    code = fault.code or ("SlowDown" if service == "s3" else "ServiceUnavailable")
    message = "Please reduce your request rate." if code == "SlowDown" else "Service unavailable (injected by tests/support/faults.py)"
    request_id = uuid.uuid4().hex
    extra = ""
    if service == "s3":
        ctype = "application/xml"
        body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
    elif "json" in headers.get("content-type", "") or "x-amz-target" in headers or service == "kinesisvideo":
        ctype = "application/x-amz-json-1.0"
        body = json.dumps({"__type": code, "message": message})
        extra = f"x-amzn-ErrorType: {code}\r\nx-amzn-query-error: {code};Receiver\r\n"
    else:
        ctype = "text/xml"
        body = f"<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    data = body.encode()
    reason = "Service Unavailable" if fault.status == 503 else "Error"
    return (
        f"HTTP/1.1 {fault.status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(data)}\r\n"
        f"x-amzn-RequestId: {request_id}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + data


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), waking a thread blocked reading it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


class _Connection:
    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: socket.socket | None = None
        self.service = ""


class FaultProxy:
    """Forwards HTTP from 127.0.0.1 to `upstream`, injecting the faults a test asks for (see the module doc)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._server = socket.create_server((host, 0))
        self.url = f"http://{host}:{self._server.getsockname()[1]}"
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._conns: set[_Connection] = set()
        self._stopped = threading.Event()
        self.injected: Counter = Counter()  # (service, mode) -> requests a fault answered
        self.forwarded: Counter = Counter()  # service -> requests let through
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        _close(self._server)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _close(conn.client)
            _close(conn.upstream)

    def fail(
        self, service: str, mode: str, seconds: float | None = None, *, count: int | None = None, code: str | None = None, status: int = 503
    ) -> None:
        """Fault every request for `service` in `mode` ("503", "reset", "hang") for `seconds` and at most `count`
        requests (None: until cleared)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {MODES}")
        fault = Fault(mode, None if seconds is None else time.monotonic() + seconds, code, status, count)
        with self._lock:
            self._faults[service] = fault
            victims = [c for c in self._conns if c.service == service] if mode == "reset" else []
        for conn in victims:
            self.injected[(service, mode)] += 1
            _reset(conn.client)
            _close(conn.upstream)

    def clear(self, service: str | None = None) -> None:
        """End the fault of `service`, or every fault."""
        with self._lock:
            if service is None:
                self._faults.clear()
            else:
                self._faults.pop(service, None)

    def fault(self, service: str) -> Fault | None:
        """The fault active for `service` now, if any."""
        with self._lock:
            fault = self._faults.get(service)
        return fault if fault is not None and fault.active() else None

    def _take(self, service: str) -> Fault | None:
        """The fault that answers this request, if any (one of its `count`)."""
        with self._lock:
            fault = self._faults.get(service)
            if fault is None or not fault.active():
                return None
            if fault.left is not None:
                fault.left -= 1
            return fault

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="fault-proxy-conn", daemon=True).start()

    def _serve(self, conn: _Connection) -> None:
        reader = _Reader(conn.client)
        try:
            while not self._stopped.is_set():
                head = reader.until(_CRLF * 2)
                if head is None:
                    return
                request_line, headers = _headers(head)
                conn.service = service = service_of(request_line, headers)
                fault = self._take(service)
                if fault is not None:
                    self._inject(conn, reader, service, headers, fault)
                    return
                if conn.upstream is None:
                    conn.upstream = socket.create_connection(self.upstream)
                    conn.upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    threading.Thread(target=self._pump, args=(conn,), name="fault-proxy-pump", daemon=True).start()
                self.forwarded[service] += 1
                conn.upstream.sendall(head)
                for chunk in _body(reader, headers):
                    conn.upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            _close(conn.upstream)
            _close(conn.client)

    def _inject(self, conn: _Connection, reader: _Reader, service: str, headers: dict[str, str], fault: Fault) -> None:
        self.injected[(service, fault.mode)] += 1
        if fault.mode == "reset":
            _reset(conn.client)
        elif fault.mode == "hang":
            while self._faults.get(service) is fault and not fault.over() and not self._stopped.is_set():
                time.sleep(0.05)
        else:
            if "100-continue" not in headers.get("expect", "").lower():
                for _ in _body(reader, headers):
                    pass
            conn.client.sendall(error_response(service, headers, fault))

    def _pump(self, conn: _Connection) -> None:
        """Upstream to client; holds while the connection's service hangs."""
        try:
            while data := conn.upstream.recv(65536):
                while (fault := self.fault(conn.service)) is not None and fault.mode == "hang" and not self._stopped.is_set():
                    time.sleep(0.05)
                conn.client.sendall(data)
        except OSError:
            pass
        finally:
            _close(conn.client)

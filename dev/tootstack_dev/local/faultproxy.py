"""An HTTP proxy in front of a local registry that injects faults, for copier tests.

    with FaultProxy(registry) as proxy:
        proxy.add("GET", r"/blobs/sha256:", "drop", after=100_000)   # connection dropped mid-body, once
        proxy.add("PATCH", r"/blobs/uploads/", "status", status=500, skip=1)  # 2nd PATCH answers 500
        proxy.add("GET", r"/blobs/", "corrupt", after=10)            # one byte flipped
        proxy.add("PATCH", r"/blobs/uploads/", "lost")               # forwarded, then no answer at all
        proxy.add("GET", r"/manifests/", "status", status=429, retry_after="1")
        proxy.add("PUT", r"/manifests/", "status", status=400, code="MANIFEST_BLOB_UNKNOWN")  # registry error code
        gate = proxy.add("GET", r"/blobs/", "gate", count=2, times=None)   # proves concurrent requests:
        ...; assert gate.max_in_flight >= 2                                   # a sequential client never opens it

The Host header is passed through, so the registry's Location headers point back at the proxy.
Rules fire `times` times (None: forever) after skipping `skip` matching requests.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer"}


@dataclass
class Rule:
    method: str
    path: re.Pattern[str]
    kind: str                      # "status" | "drop" | "lost" | "corrupt" | "gate"
    times: int | None = 1
    skip: int = 0
    after: int = 0                 # body bytes before the drop / the corrupted byte offset
    status: int = 500
    retry_after: str | None = None
    location: str | None = None    # Location header of a "status" answer (redirect tests)
    code: str = "UNKNOWN"          # the registry error code in a "status" answer's body
    count: int = 2                 # "gate": hold requests until this many are in flight at once (or `wait` s pass)
    wait: float = 5.0
    fired: int = 0
    seen: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


class FaultProxy:
    def __init__(self, upstream: Any) -> None:
        self.upstream_host, self.upstream_port = upstream.host, upstream.port
        self.rules: list[Rule] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._gate = threading.Condition(self._lock)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.host = "127.0.0.1"
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fault-proxy", daemon=True)

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, method: str, path: str, kind: str, **kwargs: Any) -> Rule:
        rule = Rule(method.upper(), re.compile(path), kind, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _match(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self.counts[method] += 1
            for rule in self.rules:
                if rule.method == method and rule.path.search(path) and (rule.times is None or rule.fired < rule.times):
                    rule.seen += 1
                    if rule.seen <= rule.skip:
                        continue
                    rule.fired += 1
                    return rule
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        rule = self._match(h.command, h.path)
        if rule is not None and rule.kind == "gate":
            with self._gate:
                rule.in_flight += 1
                rule.max_in_flight = max(rule.max_in_flight, rule.in_flight)
                self._gate.notify_all()
                self._gate.wait_for(lambda: rule.max_in_flight >= rule.count, timeout=rule.wait)
            try:
                self._forward(h, body, None)
            finally:
                with self._gate:
                    rule.in_flight -= 1
            return
        if rule is not None and rule.kind == "status":
            payload = ('{"errors":[{"code":"%s","message":"injected fault"}]}' % rule.code).encode()
            h.send_response(rule.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            if rule.retry_after is not None:
                h.send_header("Retry-After", rule.retry_after)
            if rule.location is not None:
                h.send_header("Location", rule.location)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(payload)
            return
        self._forward(h, body, rule)

    def _forward(self, h: BaseHTTPRequestHandler, body: bytes, rule: Rule | None) -> None:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(h.command, h.path, body=body if (body or h.command in ("POST", "PUT", "PATCH")) else None,
                         headers=headers)
            upstream = conn.getresponse()
            data = upstream.read() if h.command != "HEAD" else b""
            if rule is not None and rule.kind == "lost":   # the upstream did the work; the client never hears
                _hang_up(h)
                return
            h.send_response(upstream.status)
            for key, value in upstream.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    h.send_header(key, value)
            length = upstream.getheader("Content-Length") if h.command == "HEAD" else str(len(data))
            if length is not None:
                h.send_header("Content-Length", length)
            h.end_headers()
            if rule is not None and rule.kind == "drop":
                h.wfile.write(data[: rule.after])
                h.wfile.flush()
                _hang_up(h)
                return
            if rule is not None and rule.kind == "corrupt" and len(data) > rule.after:
                data = data[: rule.after] + bytes([data[rule.after] ^ 0xFF]) + data[rule.after + 1:]
            h.wfile.write(data)
        finally:
            conn.close()


def _hang_up(h: BaseHTTPRequestHandler) -> None:
    """Close the client's connection abruptly, whatever was (or was not) sent on it."""
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""

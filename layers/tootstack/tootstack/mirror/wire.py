"""The plain-socket HTTP/1.1 of the command line's warm check and quick copy (warmcheck.py, quickcopy.py).

`Connection`: one kept-alive connection, one request at a time (Content-Length or chunked bodies).
`Pool`: the connections (one per scheme and host) and request counts (per host) of one thread at a time:
the warm check's pools become the quick copy's first worker's, so a cold copy starts on the sockets (and
TLS sessions) the check opened. Even the standard library's `http.client` costs more to import, with its
`email` parser, than the requests a warm check makes. No HTTP client library is imported here.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

USER_AGENT = "tootstack-mirror/0.1"
TIMEOUT = 10.0
MAX_HEADER_LINES = 100
MAX_BODY = 4 << 20          # a token answer or a manifest (registries take manifests up to 4 MiB)


class Unexpected(Exception):
    """Anything the plain-socket path does not handle: the caller hands the job to the full copier."""


class Connection:
    """One kept-alive HTTP/1.1 connection: request, then the whole response (status, lower-cased headers, body)."""

    def __init__(self, scheme: str, netloc: str, timeout: float = TIMEOUT) -> None:
        host, _, port = netloc.rpartition(":") if netloc.rpartition(":")[2].isdigit() else (netloc, "", "")
        host = host.strip("[]")
        # An ASCII host goes to getaddrinfo as bytes: a str would be IDNA-encoded first, which imports the
        # `idna` codec with `stringprep` and `unicodedata` (a millisecond of a warm run) for nothing.
        address = host.encode("ascii") if host.isascii() else host
        sock = socket.create_connection((address, int(port) if port else (443 if scheme == "https" else 80)), timeout)
        if scheme == "https":
            from tootstack.mirror.tls import tls_context

            sock = tls_context().wrap_socket(sock, server_hostname=host)
        self.netloc = netloc
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.open = True

    def close(self) -> None:
        self.open = False
        self.reader.close()
        self.sock.close()

    def request(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        self.send(method, target, headers, body)
        status, answer = self.read_head()
        return status, answer, self.read_body(method, status, answer)

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes | Iterable[bytes] = b"") -> None:
        """The request line and headers, then the body: bytes, or chunks of a length the caller set in Content-Length."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, bytes):
            self.sock.sendall(head + body)
            return
        self.sock.sendall(head)
        for chunk in body:
            self.sock.sendall(chunk)

    def read_head(self) -> tuple[int, dict[str, str]]:
        """Status and lower-cased headers (the first of repeated ones) of the next response."""
        status_line = self.reader.readline(65537).decode("latin-1")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise Unexpected("status line")
        status = int(rest[:3])
        answer: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = self.reader.readline(65537).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise Unexpected("header line")
            answer.setdefault(name.strip().lower(), value.strip())    # the first one counts (one challenge)
        else:
            raise Unexpected("too many headers")
        if answer.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self.open = False
        return status, answer

    def read_body(self, method: str, status: int, answer: dict[str, str]) -> bytes:
        """The whole body of a response whose head was just read (at most MAX_BODY bytes)."""
        if method == "HEAD" or status in (204, 304) or status < 200:
            return b""
        if answer.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked()
        if "content-length" in answer:
            length = int(answer["content-length"])
            if length > MAX_BODY:
                raise Unexpected("body too large")
            body = self.reader.read(length)
            if len(body) != length:
                raise Unexpected("short body")
            return body
        self.open = False                   # delimited by the end of the connection
        return self.reader.read(MAX_BODY)

    def _chunked(self) -> bytes:
        parts, total = [], 0
        while True:
            size = int(self.reader.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.reader.readline(65537).strip():      # trailers, then the blank line
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise Unexpected("body too large")
            parts.append(self.reader.read(size))
            self.reader.readline(3)                             # CRLF after each chunk


class Pool:
    """Kept-alive connections, one per (scheme, host), used by one thread at a time; requests counted per host."""

    def __init__(self, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.connections: dict[tuple[str, str], Connection] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def connection(self, scheme: str, netloc: str) -> Connection:
        if scheme not in ("http", "https"):
            raise Unexpected(scheme)
        conn = self.connections.get((scheme, netloc))
        if conn is None or not conn.open:
            if conn is not None:
                conn.close()
            conn = self.connections[(scheme, netloc)] = Connection(scheme, netloc, self.timeout)
        return conn

    def count(self, netloc: str, method: str) -> None:
        counts = self.counts.setdefault(netloc, {})
        counts[method] = counts.get(method, 0) + 1

    def adopt(self, other: Pool) -> None:
        """Take over `other`'s open connections (to hosts this pool has none for) with this pool's timeout;
        its counts stay with it. `other` is left empty."""
        for key, conn in other.connections.items():
            if conn.open and key not in self.connections:
                conn.sock.settimeout(self.timeout)
                self.connections[key] = conn
            else:
                conn.close()
        other.connections = {}

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()
        self.connections = {}

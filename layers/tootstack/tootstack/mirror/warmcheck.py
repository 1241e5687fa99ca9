"""The CLI's warm check: is DEST already at SRC's digest? HEAD requests only, over plain sockets.

`tootstack mirror` runs mostly as a scheduled no-op: the destination already has the image. That answer
takes two manifest HEADs (plus the registries' auth round trips), and in a fresh process importing httpx
and its dependencies costs several times more than the requests themselves; even the standard library's
`http.client` costs more than the requests (it loads the `email` package to parse headers). So the
command first asks over a minimal HTTP/1.1 exchange on a socket (`_Connection`: one request at a time per
connection, kept alive, Content-Length or chunked bodies), the source and the destination at the same
time; only when the digests differ, or anything at all is unexpected (no digest header, a redirect, an
auth refusal, a network error, a malformed answer), does it load the full copier (httpx), which then
does the whole job with its own retries and error messages. The check never raises and never prints:
at worst it costs a few requests, HEAD only on the source. With a proxy configured in the environment
(which httpx honours and a plain socket does not) it stands aside and the copier does the whole job.

Auth flows are those of the copier (auth.py): an anonymous first request, then on a 401 either Basic
with the given credentials or the bearer-token flow (token service asked with Basic credentials for the
repository's pull scope), the request replayed once.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Iterable
from urllib.parse import urlencode, urlsplit

from tootstack.mirror.challenge import (
    ACCEPT, basic_header, normalize_scope, parse_challenge, realm_problem, token_from_answer, token_query,
)
from tootstack.mirror.refs import ImageRef

USER_AGENT = "tootstack-mirror/0.1"
TIMEOUT = 10.0
MAX_HEADER_LINES = 100
MAX_BODY = 4 << 20          # a token answer or a manifest (registries take manifests up to 4 MiB)
# httpx honours these (trust_env); a plain socket does not: with a proxy configured the check stands aside.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


class _Unexpected(Exception):
    pass


class _Connection:
    """One kept-alive HTTP/1.1 connection: request, then the whole response (status, lower-cased headers, body)."""

    def __init__(self, scheme: str, netloc: str, timeout: float = TIMEOUT) -> None:
        host, _, port = netloc.rpartition(":") if netloc.rpartition(":")[2].isdigit() else (netloc, "", "")
        host = host.strip("[]")
        sock = socket.create_connection((host, int(port) if port else (443 if scheme == "https" else 80)), timeout)
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
            raise _Unexpected("status line")
        status = int(rest[:3])
        answer: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = self.reader.readline(65537).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, sep, value = line.partition(":")
            if not sep:
                raise _Unexpected("header line")
            answer.setdefault(name.strip().lower(), value.strip())    # the first one counts (one challenge)
        else:
            raise _Unexpected("too many headers")
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
                raise _Unexpected("body too large")
            body = self.reader.read(length)
            if len(body) != length:
                raise _Unexpected("short body")
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
                raise _Unexpected("body too large")
            parts.append(self.reader.read(size))
            self.reader.readline(3)                             # CRLF after each chunk


class _Registry:
    """HEAD manifests on one registry over kept-alive connections (one per scheme/host), answering its challenge."""

    def __init__(self, registry: str, creds: tuple[str, str] | None, plain_http: bool) -> None:
        self.scheme = "http" if plain_http else "https"
        self.registry = registry
        self.creds = creds
        self.counts: dict[str, int] = {}
        self.auth_state: dict[str, Any] = {}     # what the copier's RegistryAuth.adopt takes
        self._connections: dict[tuple[str, str], _Connection] = {}

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()

    def _request(self, scheme: str, netloc: str, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if scheme not in ("http", "https"):
            raise _Unexpected(scheme)
        key = (scheme, netloc)
        conn = self._connections.get(key)
        if conn is None or not conn.open:
            if conn is not None:
                conn.close()
            conn = self._connections[key] = _Connection(scheme, netloc)
        if netloc == self.registry:
            self.counts[method] = self.counts.get(method, 0) + 1
        return conn.request(method, target, {"User-Agent": USER_AGENT, **headers})

    def head_manifest(self, repository: str, reference: str) -> tuple[int, str, str]:
        """(status, Docker-Content-Digest, media type) of HEAD /v2/<repository>/manifests/<reference>."""
        target = f"/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ACCEPT}
        status, answer, _ = self._request(self.scheme, self.registry, "HEAD", target, headers)
        if status == 401:
            headers["Authorization"] = self._authorization(answer.get("www-authenticate", ""), repository)
            status, answer, _ = self._request(self.scheme, self.registry, "HEAD", target, headers)
        return status, answer.get("docker-content-digest", ""), answer.get("content-type", "").split(";")[0]

    def _authorization(self, challenge: str, repository: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic" and self.creds is not None:
            self.auth_state = {"mode": "basic"}
            return basic_header(*self.creds)
        if scheme != "bearer" or "realm" not in params:
            raise _Unexpected("challenge")
        if realm_problem(self.registry, params["realm"], self.scheme == "http"):
            raise _Unexpected("realm")  # the copier's auth flow refuses it and says why
        scopes = {normalize_scope(f"repository:{repository}:pull")}
        scopes.update(normalize_scope(s) for s in params.get("scope", "").split(" ") if s)
        query = token_query(params, scopes, self.creds[0] if self.creds is not None else None)
        headers = {"Authorization": basic_header(*self.creds)} if self.creds is not None else {}
        realm = urlsplit(params["realm"])
        target = (realm.path or "/") + "?" + "&".join(filter(None, (realm.query, urlencode(query))))
        status, _, body = self._request(realm.scheme, realm.netloc, "GET", target, headers)
        if status != 200:
            raise _Unexpected("token")
        token, lifetime = token_from_answer(body)
        if not token:
            raise _Unexpected("token")
        self.auth_state = {"mode": "bearer", "token": token, "scopes": sorted(scopes), "challenge": params,
                           "lifetime": lifetime}
        return f"Bearer {token}"


class WarmCheck:
    """Outcome of `warm_check`: `warm` is True only when the destination tag has the source's digest."""

    def __init__(self) -> None:
        self.warm = False
        self.digest = ""                     # the source manifest's digest ("" when the check could not tell)
        self.media_type = ""
        self.dest_digest: str | None = None  # the destination tag's digest, "" when absent, None when unknown
        self.source_requests: dict[str, int] = {}
        self.source_auth: dict[str, Any] = {}   # auth state learned, for RegistryAuth.adopt
        self.dest_auth: dict[str, Any] = {}


def warm_check(src: ImageRef, dst: ImageRef, tag: str, src_creds: tuple[str, str] | None,
               dest_creds: tuple[str, str] | None, plain_http: bool) -> WarmCheck:
    """HEAD SRC's manifest and DEST's `tag` concurrently; never raises (a failure just means "not known warm")."""
    check = WarmCheck()
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES):
        return check
    source = _Registry(src.registry, src_creds, plain_http)
    dest = _Registry(dst.registry, dest_creds, plain_http)
    dest_answer: list[Any] = []

    def ask_dest() -> None:
        try:
            dest_answer.append(dest.head_manifest(dst.repository, tag))
        except Exception:  # any failure: let the full copier do (and report) the work
            pass

    helper = threading.Thread(target=ask_dest, name="mirror-warmcheck", daemon=True)
    helper.start()
    try:
        status, digest, media_type = source.head_manifest(src.repository, src.reference)
        if status == 200 and digest.startswith("sha256:") and (not src.digest or digest == src.digest):
            check.digest, check.media_type = digest, media_type
    except Exception:  # same: fall back to the copier
        pass
    finally:
        helper.join()
        check.source_requests = dict(source.counts)
        source.close()
        dest.close()
    if dest_answer and dest_answer[0][0] in (200, 404):
        check.dest_digest = dest_answer[0][1] if dest_answer[0][0] == 200 else ""
    check.source_auth = source.auth_state
    if dest.auth_state.get("mode") == "basic":      # a bearer token from the check only has the pull scope
        check.dest_auth = dest.auth_state
    check.warm = bool(check.digest) and check.dest_digest == check.digest
    return check

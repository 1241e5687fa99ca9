"""The CLI's cold copy over the warm check's sockets: the common case without loading httpx.

When the warm check (warmcheck.py) finds the destination not at the source's digest, a fresh command-line
process would spend more CPU importing httpx and building its clients than copying a small image. So the
command first tries this copy, the copier's exact sequence of requests (copier.py) on plain HTTP/1.1
connections (wire.py; the first worker continues on the check's own), with the auth the check just learned
(the source's pull token or Basic credentials, the destination's Basic credentials):

1. the destination does not hold the manifest by digest (HEAD), else the copier re-tags its own copy;
2. GET the manifest (and every platform manifest the destination lacks), each verified by sha256;
3. blobs of every platform on one set of threads: HEAD skip, else POST an upload (the source's GET is sent
   while the registry answers it), stream the source's GET (following a redirect to the storage host,
   without the registry's credentials) through a sha256 into one PUT, or for a blob larger than PART_SIZE
   into one PATCH and a final PUT, with the expected digest (the registry refuses a mismatch);
4. platform manifests by digest, then the tag, last.

It never raises and never retries: anything it does not expect (a 401, a 5xx or 429, a network error,
a chunked blob, a token registry as destination, same-registry mounts, a source token within 30 s of
its expiry) makes it stop and return None,
and the full copier (httpx: retries, resume, mounts, token refresh, clear errors) does the job again;
what landed is skipped by its HEADs, and nothing is tagged before every blob and platform manifest is
in place. Memory stays flat: blobs stream in READ_SIZE pieces.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urlsplit

from tootstack.mirror.challenge import ACCEPT, basic_header
from tootstack.mirror.manifest import PART_SIZE, copy_plan, hashed_stream, load_manifest, platform_digests
from tootstack.mirror.refs import ImageRef
from tootstack.mirror.result import MirrorResult
from tootstack.mirror.warmcheck import WarmCheck
from tootstack.mirror.wire import USER_AGENT, Connection, Pool, Unexpected

REDIRECTS = (301, 302, 303, 307, 308)
TIMEOUT = 60.0                 # per socket operation, as the copier's (a registry may take seconds to commit a large blob)


class _Side:
    """One registry as the copy sees it: where, and the Authorization header for its own host only."""

    def __init__(self, scheme: str, registry: str, authorization: str | None, expires: float | None = None) -> None:
        self.scheme, self.registry, self.authorization = scheme, registry, authorization
        self.expires = expires      # monotonic time after which the bearer token must not be used


class _Session(Pool):
    """One worker thread's connections (one per scheme/host) and request counts per host."""

    def __init__(self) -> None:
        super().__init__(TIMEOUT)

    def send(self, side: _Side, method: str, target: str, headers: dict[str, str] | None = None,
             body: bytes | Iterator[bytes] = b"") -> Connection:
        """Send one request to `side` (its answer not read yet: `answer(conn)`)."""
        if side.expires is not None and time.monotonic() > side.expires:
            raise Unexpected("token about to expire")  # the copier renews tokens; stop before a request fails
        conn = self.connection(side.scheme, side.registry)
        self.count(side.registry, method)
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        if side.authorization:
            sent["Authorization"] = side.authorization
        conn.send(method, target, sent, body)
        return conn

    @staticmethod
    def answer(conn: Connection) -> tuple[int, dict[str, str]]:
        """Status and headers of the request just sent on `conn` (body not read yet)."""
        status, answer = conn.read_head()
        if status in (401, 403, 429) or status >= 500:
            raise Unexpected(f"HTTP {status}")      # the copier retries, re-authenticates, reports
        return status, answer

    def start(self, side: _Side, method: str, target: str, headers: dict[str, str] | None = None,
              body: bytes | Iterator[bytes] = b"") -> tuple[Connection, int, dict[str, str]]:
        """Send one request to `side`; return its connection (body not read yet), status and headers."""
        conn = self.send(side, method, target, headers, body)
        return (conn, *self.answer(conn))

    def call(self, side: _Side, method: str, target: str, headers: dict[str, str] | None = None,
             body: bytes | Iterator[bytes] = b"") -> tuple[int, dict[str, str], bytes]:
        conn, status, answer = self.start(side, method, target, headers, body)
        return status, answer, conn.read_body(method, status, answer)


def _target(location: str, side: _Side, params: dict[str, str] | None = None) -> str:
    """Request target for an upload Location (absolute or relative) on the same registry, with `params` added."""
    url = urlsplit(location)
    if url.netloc and (url.netloc != side.registry or url.scheme != side.scheme):
        raise Unexpected("upload location on another host")
    query = "&".join(filter(None, (url.query, urlencode(params or {}))))
    return (url.path or "/") + (f"?{query}" if query else "")


class QuickCopy:
    def __init__(self, src: ImageRef, dst: ImageRef, tag: str, check: WarmCheck, src_creds: tuple[str, str] | None,
                 dest_creds: tuple[str, str] | None, plain_http: bool, concurrency: int,
                 progress: Callable[[str], None] | None = None) -> None:
        scheme = "http" if plain_http else "https"
        auth = check.source_auth
        expires = None
        if auth.get("mode") == "bearer":
            source_authorization: str | None = f"Bearer {auth['token']}"
            expires = time.monotonic() + max(float(auth.get("lifetime") or 60) - 30, 5)
        elif auth.get("mode") == "basic" and src_creds is not None:
            source_authorization = basic_header(*src_creds)
        elif not auth:
            source_authorization = None              # the source answered without a challenge
        else:
            raise Unexpected("source auth")
        if check.dest_auth.get("mode") == "basic" and dest_creds is not None:
            dest_authorization: str | None = basic_header(*dest_creds)
        elif not check.dest_auth and dest_creds is None:
            dest_authorization = None
        else:
            raise Unexpected("destination auth")    # e.g. a token registry: the push scope needs the copier
        self.source = _Side(scheme, src.registry, source_authorization, expires)
        self.dest = _Side(scheme, dst.registry, dest_authorization)
        self.src, self.dst, self.tag, self.check = src, dst, tag, check
        self.concurrency = max(1, concurrency)
        self.progress = progress or (lambda _msg: None)
        self.sessions: list[_Session] = []
        self._workers: list[_Session] = []
        self._lock = threading.Lock()
        self.result = MirrorResult(str(src), f"{dst.registry}/{dst.repository}:{tag}", check.digest, check.media_type)

    def session(self) -> _Session:
        session = _Session()
        with self._lock:
            self.sessions.append(session)
        return session

    def close(self) -> None:
        for session in self.sessions:
            session.close()

    def requests(self, registry: str) -> dict[str, int]:
        """Requests sent to `registry` by every worker."""
        out: dict[str, int] = {}
        for session in self.sessions:
            for method, n in session.counts.get(registry, {}).items():
                out[method] = out.get(method, 0) + n
        return out

    # -- the copy ---------------------------------------------------------------------------------
    def run(self) -> MirrorResult:
        started = time.monotonic()
        main = self._worker_session(0)
        if self.check.pool is not None:
            main.adopt(self.check.pool)      # continue on the check's sockets: no new connection (nor TLS handshake)
        digest, dest_repo = self.check.digest, self.dst.repository
        status, _, _ = main.call(self.dest, "HEAD", f"/v2/{dest_repo}/manifests/{digest}", {"Accept": ACCEPT})
        if status != 404:
            raise Unexpected("destination holds the digest: the copier re-tags it")
        body, media_type, manifest = self._manifest(main, digest)
        # platform manifests: HEAD on the destination, GET from the source, all platforms at once
        entries = platform_digests(media_type, manifest)
        children, ordered = copy_plan(manifest, entries, self._parallel(entries, self._child))
        self._parallel(ordered, self._blob)
        # platform manifests by digest (all blobs are in place), concurrently; then the tag, last
        self._parallel(children, lambda session, c: self._put_manifest(session, c[0], c[1], c[2], c[0]))
        self.result.manifests_copied += len(children)
        self._put_manifest(main, self.tag, body, media_type, digest)    # the tag, last
        self.result.manifests_copied += 1
        self.result.seconds = time.monotonic() - started
        return self.result

    def _manifest(self, session: _Session, digest: str, platform: bool = False) -> tuple[bytes, str, dict[str, Any]]:
        target = f"/v2/{self.src.repository}/manifests/{digest}"
        status, answer, body = session.call(self.source, "GET", target, {"Accept": ACCEPT})
        if status != 200:
            raise Unexpected(f"GET manifest: {status}")
        media_type, manifest = load_manifest(body, answer.get("content-type", "").split(";")[0], digest, target, platform)
        return body, media_type, manifest

    def _put_manifest(self, session: _Session, reference: str, body: bytes, media_type: str, digest: str) -> None:
        status, answer, _ = session.call(self.dest, "PUT", f"/v2/{self.dst.repository}/manifests/{reference}",
                                         {"Content-Type": media_type, "Content-Length": str(len(body))}, body)
        if status not in (200, 201) or answer.get("docker-content-digest", digest) != digest:
            raise Unexpected("PUT manifest")

    def _child(self, session: _Session, child: str) -> tuple[bytes, str, dict[str, Any]] | None:
        status, _, _ = session.call(self.dest, "HEAD", f"/v2/{self.dst.repository}/manifests/{child}", {"Accept": ACCEPT})
        if status == 200:
            return None
        if status != 404:
            raise Unexpected(f"HEAD platform manifest: {status}")
        return self._manifest(session, child, platform=True)

    def _parallel(self, items: list[Any], fn: Callable[[_Session, Any], Any]) -> list[Any]:
        """fn(session, item) for every item on up to `concurrency` threads (this one included), each with its
        own connections; results in order; stops taking items at the first failure, then raises it."""
        results: list[Any] = [None] * len(items)
        pending = list(reversed(range(len(items))))      # pop() takes them in order
        failures: list[BaseException] = []

        def work(session: _Session) -> None:
            while True:
                with self._lock:
                    if failures or not pending:
                        return
                    index = pending.pop()
                try:
                    results[index] = fn(session, items[index])
                except BaseException as exc:  # re-raised below (the copier takes over)
                    with self._lock:
                        failures.append(exc)
                    return

        threads = [threading.Thread(target=work, args=(self._worker_session(i),), name=f"mirror-quick-{i}", daemon=True)
                   for i in range(1, min(self.concurrency, len(items)))]
        for thread in threads:
            thread.start()
        work(self._worker_session(0))
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return results

    def _worker_session(self, index: int) -> _Session:
        """The index-th worker's session, kept from one parallel step to the next (its connections stay open)."""
        while len(self._workers) <= index:
            self._workers.append(self.session())
        return self._workers[index]

    def _blob(self, session: _Session, desc: dict[str, Any]) -> None:
        digest, size = desc["digest"], int(desc.get("size") or 0)
        src_repo, dest_repo = self.src.repository, self.dst.repository
        status, _, _ = session.call(self.dest, "HEAD", f"/v2/{dest_repo}/blobs/{digest}")
        if status in (200, *REDIRECTS):
            with self._lock:
                self.result.blobs_skipped += 1
            return
        if status != 404 or size <= 0:
            raise Unexpected(f"HEAD blob: {status}")
        # The source's GET goes out while the registry opens the upload (its slowest answer on a busy
        # registry): the two hosts are on separate connections.
        posted = session.send(self.dest, "POST", f"/v2/{dest_repo}/blobs/uploads/", {"Content-Length": "0"})
        reader = self._open_blob(session, src_repo, digest, size)
        status, answer = session.answer(posted)
        posted.read_body("POST", status, answer)
        if status != 202 or "location" not in answer:
            raise Unexpected(f"POST upload: {status}")
        location = answer["location"]
        hasher = hashlib.sha256()

        def body(n: int) -> Iterator[bytes]:
            return hashed_stream(reader.read, n, hasher, lambda _left: Unexpected("source stream ended early"))

        if size > PART_SIZE:
            # One PATCH streaming the whole blob, then the PUT with its digest (what `docker push` sends): the
            # copier's acknowledged parts serve its own retries, which this copy leaves to the copier anyway,
            # and waiting for each part's answer stalls the stream (1 GiB layer: 1.3x skopeo's time in parts).
            status, answer, _ = session.call(
                self.dest, "PATCH", _target(location, self.dest), body=body(size),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size),
                         "Content-Range": f"0-{size - 1}"})
            if status != 202:
                raise Unexpected(f"PATCH blob: {status}")
            location = answer.get("location", location)
            final: bytes | Iterator[bytes] = b""
            headers = {"Content-Length": "0"}
        else:                                # one streamed PUT with the digest saves a round trip
            final = body(size)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        status, _, _ = session.call(self.dest, "PUT", _target(location, self.dest, {"digest": digest}), headers, final)
        if status not in (201, 204) or "sha256:" + hasher.hexdigest() != digest:
            raise Unexpected(f"PUT blob: {status}")
        with self._lock:
            self.result.blobs_copied += 1
            self.result.bytes_copied += size
        self.progress(f"  blob {digest[7:19]} {size / 1e6:.1f} MB copied")

    def _open_blob(self, session: _Session, repository: str, digest: str, size: int) -> Any:
        """The source blob's body, positioned at its first byte (redirects to storage followed without
        the registry's credentials)."""
        side, target = self.source, f"/v2/{repository}/blobs/{digest}"
        for _ in range(4):
            conn, status, answer = session.start(side, "GET", target)
            if status in REDIRECTS and "location" in answer:
                conn.read_body("GET", status, answer)
                url = urlsplit(answer["location"])
                if url.netloc and (url.scheme, url.netloc) != (side.scheme, side.registry):
                    if url.scheme not in ("http", "https") or (url.scheme == "http" and side.scheme == "https") \
                            or url.netloc == self.dest.registry:     # that connection awaits the POST's answer
                        raise Unexpected("redirect")
                    side = _Side(url.scheme, url.netloc, None)
                target = (url.path or "/") + (f"?{url.query}" if url.query else "")
                continue
            if status != 200 or answer.get("transfer-encoding") or int(answer.get("content-length", -1)) != size:
                raise Unexpected(f"GET blob: {status}")
            return conn.reader               # read before this session's next request to that host
        raise Unexpected("too many redirects")


def quick_copy(src: ImageRef, dst: ImageRef, tag: str, check: WarmCheck, src_creds: tuple[str, str] | None,
               dest_creds: tuple[str, str] | None, plain_http: bool, concurrency: int,
               progress: Callable[[str], None] | None = None) -> tuple[MirrorResult | None, dict[str, int]]:
    """(result, source requests made): result None when the copier must do the job (never raises)."""
    if not check.digest or check.dest_digest is None or check.warm or src.registry == dst.registry:
        return None, {}
    try:
        copy = QuickCopy(src, dst, tag, check, src_creds, dest_creds, plain_http, concurrency, progress)
    except Unexpected:
        return None, {}
    try:
        result = copy.run()
    except Exception:  # anything unexpected: the copier does (and reports) the work
        result = None
    finally:
        copy.close()
    source_requests = copy.requests(src.registry)
    if result is not None:
        result.source_requests = source_requests
        result.dest_requests = copy.requests(dst.registry)
    return result, source_requests

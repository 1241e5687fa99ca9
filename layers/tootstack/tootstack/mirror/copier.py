"""Copy an image (single manifest, OCI index or Docker manifest list) between registries.

Order of work, so no partial image is ever tagged and a rerun resumes cleanly:
1. HEAD the source manifest (the digest, without a counted pull) and the destination tag: same digest
   means warm, done with HEAD requests only on the source.
2. If the destination already holds that manifest by digest, re-tag it from the destination's copy.
3. Otherwise GET the source manifests (verified against their digests), skip platform manifests the
   destination already has, and copy the missing blobs concurrently: HEAD skip, cross-repository
   mount, else streamed through a sha256 check in fixed-size PATCH parts (memory stays flat,
   an interrupted blob resumes from the last part the registry acknowledged).
4. PUT platform manifests by digest, then the tag last.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx

from tootstack.errors import InvalidInput
from tootstack.mirror.client import (
    DigestMismatch, ImageNotFound, MirrorError, RegistryClient, RetryPolicy, TransientError, classify,
)
from tootstack.mirror.manifest import (
    PART_SIZE, READ_SIZE, copy_plan, hashed_stream, load_manifest, platform_digests, sha256_digest,
)
from tootstack.mirror.refs import ImageRef, parse_ref
from tootstack.mirror.result import MirrorResult

MANIFEST_BLOB_RETRIES = 4      # extra manifest PUTs after MANIFEST_BLOB_UNKNOWN (concurrent writers)


class _Reader:
    """read(n) over an httpx streaming response, at most READ_SIZE at a time, never more than asked."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks: Iterator[bytes] = response.iter_raw(READ_SIZE)
        self._pending = b""

    def read(self, n: int) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        out, self._pending = self._pending[:n], self._pending[n:]
        return out


class Mirror:
    def __init__(self, source: RegistryClient, dest: RegistryClient, concurrency: int = 4,
                 part_size: int = PART_SIZE, mount_from: tuple[str, ...] = (),
                 progress: Callable[[str], None] | None = None) -> None:
        if part_size < READ_SIZE:
            raise InvalidInput(f"part size must be at least {READ_SIZE} bytes")
        self.source, self.dest = source, dest
        self.concurrency = max(1, concurrency)
        self.part_size = part_size
        self.mount_from = mount_from
        self.progress = progress or (lambda _msg: None)
        self._lock = threading.Lock()
        self.resumed_parts = 0      # retries that continued after the last acknowledged part
        self.restarted_blobs = 0    # retries that had to start a blob over

    # -- entry point ------------------------------------------------------------------------------
    def copy(self, src: ImageRef, dst: ImageRef, checked: Any = None) -> MirrorResult:
        """`checked`: a warmcheck.WarmCheck that just found the destination not at the source's digest; its
        answers (source digest, destination tag, auth state) are used instead of asking again."""
        started = time.monotonic()
        if dst.digest:
            raise InvalidInput(f"destination {dst} must name a tag, not a digest")
        self.source.auth.add_scope(f"repository:{src.repository}:pull")
        self.dest.auth.add_scope(f"repository:{dst.repository}:pull,push")
        if self._same_registry():
            self.dest.auth.add_scope(f"repository:{src.repository}:pull")
        for repo in self.mount_from:
            self.dest.auth.add_scope(f"repository:{repo}:pull")
        tag = dst.tag or src.tag or "latest"
        if checked is not None:
            if checked.source_auth:
                self.source.auth.adopt(**checked.source_auth)
            if checked.dest_auth:
                self.dest.auth.adopt(**checked.dest_auth)
        result = MirrorResult(str(src), f"{dst.registry}/{dst.repository}:{tag}", digest="")
        try:
            self._copy(src, dst.repository, tag, result, checked)
        finally:
            result.source_requests = dict(self.source.counts)
            result.dest_requests = dict(self.dest.counts)
            result.seconds = time.monotonic() - started
        return result

    def _same_registry(self) -> bool:
        return self.source.base_url == self.dest.base_url

    def _copy(self, src: ImageRef, dest_repo: str, tag: str, result: MirrorResult, checked: Any = None) -> None:
        if checked is not None and checked.digest:
            digest, media_type = checked.digest, checked.media_type
        else:
            head = self.source.head_manifest(src.repository, src.reference)
            if head is None:
                raise_not_found(src)
            digest, media_type, _ = head
        if not digest:  # registries that do not send Docker-Content-Digest on HEAD
            body, media_type = self.source.get_manifest(src.repository, src.reference)
            digest = sha256_digest(body)
        if src.digest and digest != src.digest:
            raise DigestMismatch(f"{src}: the registry answered with manifest {digest}")
        result.digest, result.media_type = digest, media_type
        if checked is not None and checked.digest == digest and checked.dest_digest is not None:
            current = (checked.dest_digest, "", 0) if checked.dest_digest else None
        else:
            current = self.dest.head_manifest(dest_repo, tag)
        if current is not None and current[0] == digest:
            result.warm = True
            self.progress(f"{result.destination} already at {digest}: nothing to copy")
            return
        if self.dest.head_manifest(dest_repo, digest) is not None:
            body, media_type = self.dest.get_manifest(dest_repo, digest)
            self._put_manifest(dest_repo, tag, body, media_type, digest)
            self.progress(f"{result.destination} tagged {digest} (already in the destination)")
            return

        body, media_type, manifest = self._fetch_manifest(src.repository, digest)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="mirror")
        try:
            # platform manifests: HEAD on the destination, GET from the source, all platforms at once
            entries = platform_digests(media_type, manifest)
            children, ordered = copy_plan(manifest, entries, _results([pool.submit(self._fetch_child, src, dest_repo, d)
                                                                        for d in entries]))
            self.progress(f"{src}: {len(ordered)} blobs to check, {len(children)} platform manifests to copy")
            _results([pool.submit(self._copy_blob, src.repository, dest_repo, d, result) for d in ordered])
            # platform manifests by digest (all blobs are in place), concurrently; then the tag, last
            _results([pool.submit(self._put_manifest, dest_repo, d, b, t, d) for d, b, t in children])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        result.manifests_copied += len(children)
        self._put_manifest(dest_repo, tag, body, media_type, digest)   # the tag, last
        result.manifests_copied += 1
        self.progress(f"{result.destination} -> {digest}: {result.blobs_copied} blobs copied "
                      f"({result.bytes_copied / 1e6:.1f} MB), {result.blobs_skipped} already there")

    def _fetch_child(self, src: ImageRef, dest_repo: str, child_digest: str) -> tuple[bytes, str, dict[str, Any]] | None:
        """A platform manifest to copy (body, media type, parsed), or None when the destination has it already."""
        if self.dest.head_manifest(dest_repo, child_digest) is not None:
            return None
        return self._fetch_manifest(src.repository, child_digest, platform=True)

    def _fetch_manifest(self, repository: str, digest: str, platform: bool = False) -> tuple[bytes, str, dict[str, Any]]:
        """(body, media type, parsed) of the source's manifest `digest`, verified."""
        body, header_type = self.source.get_manifest(repository, digest)
        media_type, manifest = load_manifest(body, header_type, digest, f"{repository}@{digest}", platform)
        return body, media_type, manifest

    def _put_manifest(self, repository: str, reference: str, body: bytes, media_type: str, digest: str) -> None:
        # Concurrent mirrors of one image: a registry may still answer MANIFEST_BLOB_UNKNOWN for a blob or
        # platform manifest another writer has just stored. A manifest PUT is idempotent: retry a few times.
        for attempt in range(MANIFEST_BLOB_RETRIES + 1):
            try:
                answered = self.dest.put_manifest(repository, reference, body, media_type)
                break
            except MirrorError as exc:
                if "MANIFEST_BLOB_UNKNOWN" not in str(exc) or attempt == MANIFEST_BLOB_RETRIES:
                    raise
                time.sleep(self.dest.retry.delay(attempt))
        if answered and answered != digest:
            raise DigestMismatch(f"destination stored manifest {repository}:{reference} as {answered}, expected {digest}")

    # -- blobs ------------------------------------------------------------------------------------
    def _copy_blob(self, src_repo: str, dest_repo: str, desc: dict[str, Any], result: MirrorResult) -> None:
        digest, size = desc["digest"], int(desc.get("size") or 0)
        if self.dest.blob_exists(dest_repo, digest):
            with self._lock:
                result.blobs_skipped += 1
            return
        mount_candidates = ([src_repo] if self._same_registry() else []) + [r for r in self.mount_from if r != dest_repo]
        location = None
        for candidate in mount_candidates:
            location = self.dest.start_upload(dest_repo, mount=digest, mount_from=candidate)
            if location is None:
                with self._lock:
                    result.blobs_mounted += 1
                    result.blobs_skipped += 1
                return
            break  # the registry opened a normal upload session instead: use it
        copied = self._stream_blob(src_repo, dest_repo, digest, size, location)
        with self._lock:
            result.blobs_copied += 1
            result.bytes_copied += copied
        self.progress(f"  blob {digest[7:19]} {size / 1e6:.1f} MB copied")

    def _stream_blob(self, src_repo: str, dest_repo: str, digest: str, size: int, location: str | None) -> int:
        """Upload one blob in PATCH parts, hashing as it streams; resume from the last acknowledged part."""
        location = location or self.dest.start_upload(dest_repo)
        assert location is not None
        offset, hasher = 0, hashlib.sha256()
        checkpoint: tuple[int, Any, str] = (0, hashlib.sha256(), location)
        attempt = 0
        while True:
            marks: list[tuple[int, Any, str]] = []
            try:
                location = self._send_parts(src_repo, digest, size, offset, hasher, location, marks)
                break
            except TransientError as exc:
                if marks:
                    checkpoint = marks[-1]
                attempt += 1
                if attempt >= self.source.retry.attempts:
                    self.dest.cancel_upload(checkpoint[2])
                    raise MirrorError(f"blob {digest}: gave up after {attempt} attempts ({exc})") from None
                time.sleep(self.source.retry.delay(attempt - 1, exc.retry_after))
                ck_offset, ck_hasher, ck_location = checkpoint
                held = self.dest.upload_offset(ck_location) if ck_offset else None
                if ck_offset and held == ck_offset:
                    offset, hasher, location = ck_offset, ck_hasher.copy(), ck_location   # resume after the last part
                    with self._lock:
                        self.resumed_parts += 1
                else:  # nothing acknowledged, or the registry holds a partial part: start this blob over
                    with self._lock:
                        self.restarted_blobs += 1
                    self.dest.cancel_upload(ck_location)
                    location = self.dest.start_upload(dest_repo)
                    offset, hasher = 0, hashlib.sha256()
                    checkpoint = (0, hashlib.sha256(), location)
                self.progress(f"  blob {digest[7:19]}: retrying from byte {offset} ({exc})")
        if location is None:
            return size
        actual = "sha256:" + hasher.hexdigest()
        if actual != digest:
            self.dest.cancel_upload(location)
            raise DigestMismatch(f"blob {src_repo}@{digest}: received content hashes to {actual}; nothing was tagged")
        final = httpx.URL(location).copy_merge_params({"digest": digest})
        response = self.dest.send("PUT", final, f"PUT blob {dest_repo}@{digest[:19]}", headers={"Content-Length": "0"})
        if response.status_code == 400:
            raise DigestMismatch(f"destination rejected blob {digest} as invalid: nothing was tagged")
        if response.status_code not in (201, 204):
            raise MirrorError(f"PUT blob {dest_repo}@{digest[:19]}: HTTP {response.status_code}")
        return size

    def _send_parts(self, src_repo: str, digest: str, size: int, offset: int, hasher: Any, location: str,
                    marks: list[tuple[int, Any, str]]) -> str | None:
        """Stream source bytes [offset, size) as PATCH parts; append (offset, hash state, location) per
        acknowledged part; return the upload location to finish, or None when a single PUT already stored it."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        what = f"GET blob {self.source.registry}/{src_repo}@{digest[:19]}"
        response = self.source._send_once("GET", f"/v2/{src_repo}/blobs/{digest}", what, stream=True, headers=headers)
        try:
            if response.status_code == 404:
                raise MirrorError(f"{what}: blob unknown to the source registry (HTTP 404)")
            classify(response, what)
            if offset and response.status_code != 206:
                raise MirrorError(f"{what}: the source ignored the Range request (HTTP {response.status_code})")
            if response.status_code not in (200, 206):
                raise MirrorError(f"{what}: HTTP {response.status_code}")
            reader = _Reader(response)

            def read(n: int) -> bytes:
                try:
                    return reader.read(n)
                except httpx.TransportError as exc:
                    raise _SourceBroke(f"{what}: {type(exc).__name__}") from None

            def body(n: int) -> Iterator[bytes]:
                return hashed_stream(read, n, hasher, lambda left: _SourceBroke(f"{what}: stream ended {left} bytes early"))

            if offset == 0 and 0 < size <= self.part_size:
                # One part: a streamed monolithic PUT with the expected digest saves a round trip; the registry
                # checks the digest before it stores anything.
                final = httpx.URL(location).copy_merge_params({"digest": digest})
                try:
                    put = self.dest._send_once(
                        "PUT", final, f"PUT blob {digest[:19]}", content=body(size),
                        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
                except _SourceBroke as exc:
                    raise TransientError(str(exc)) from None
                classify(put, f"PUT blob {digest[:19]}")
                if put.status_code == 400 or "sha256:" + hasher.hexdigest() != digest:
                    raise DigestMismatch(f"blob {src_repo}@{digest}: received content hashes to "
                                         f"sha256:{hasher.hexdigest()}; nothing was stored or tagged")
                if put.status_code not in (201, 204):
                    raise MirrorError(f"PUT blob {digest[:19]}: HTTP {put.status_code}")
                return None
            while offset < size:
                part = min(self.part_size, size - offset)
                try:
                    patch = self.dest._send_once(
                        "PATCH", location, f"PATCH blob {digest[:19]}", content=body(part),
                        headers={"Content-Type": "application/octet-stream", "Content-Length": str(part),
                                 "Content-Range": f"{offset}-{offset + part - 1}"})
                except _SourceBroke as exc:
                    raise TransientError(str(exc)) from None
                classify(patch, f"PATCH blob {digest[:19]}")
                if patch.status_code != 202:
                    raise MirrorError(f"PATCH blob {digest[:19]}: HTTP {patch.status_code}")
                offset += part
                location = self.dest.absolute(patch.headers.get("location", location))
                marks.append((offset, hasher.copy(), location))
            try:
                extra = reader.read(1)
            except httpx.TransportError:
                extra = b""
            if extra:
                raise DigestMismatch(f"{what}: source sent more than the {size} bytes its manifest declares")
        finally:
            response.close()
        return location


def _results(futures: list[Any]) -> list[Any]:
    """Every future's result in order; waits for all of them, then raises the first error."""
    results, errors = [], []
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as exc:  # keep waiting for the others, report the first
            errors.append(exc)
    if errors:
        raise errors[0]
    return results


class _SourceBroke(Exception):
    pass


def raise_not_found(ref: ImageRef) -> None:
    raise ImageNotFound(f"image not found: {ref}")


def mirror_image(source: str, destination: str, src_creds: tuple[str, str] | None = None,
                 dest_creds: tuple[str, str] | None = None, plain_http: bool = False,
                 concurrency: int = 4, part_size: int = PART_SIZE, retry: RetryPolicy | None = None,
                 mount_from: tuple[str, ...] = (), progress: Callable[[str], None] | None = None,
                 checked: Any = None) -> MirrorResult:
    """Copy SOURCE to DESTINATION (tag defaults to the source tag). Raises TootstackError subclasses.

    `checked`: the CLI's warmcheck.WarmCheck for the same SOURCE and DESTINATION, made just before (its
    answers and auth state are reused rather than asked again)."""
    src = parse_ref(source)
    dst = parse_ref(destination, default_tag=None)
    if dst.digest:
        raise InvalidInput(f"destination {destination} must name a tag, not a digest")
    if not dst.tag:
        if not src.tag:
            raise InvalidInput(f"destination {destination} needs a tag: the source {source} is pinned by digest only")
        dst = ImageRef(dst.registry, dst.repository, src.tag)
    source_client = RegistryClient(src.registry, *(src_creds or (None, None)), plain_http=plain_http, retry=retry,
                                   max_connections=concurrency + 2)
    dest_client = RegistryClient(dst.registry, *(dest_creds or (None, None)), plain_http=plain_http, retry=retry,
                                 max_connections=concurrency + 2)
    with source_client, dest_client:
        return Mirror(source_client, dest_client, concurrency=concurrency, part_size=part_size,
                      mount_from=mount_from, progress=progress).copy(src, dst, checked)

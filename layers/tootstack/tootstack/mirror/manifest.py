"""What both copiers (copier.py over httpx, quickcopy.py over plain sockets) know about manifests and blobs:
verify and parse a manifest, its platform manifests, the blobs to copy, and the streaming sizes."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterator

from tootstack.mirror.challenge import INDEX_TYPES, MANIFEST_TYPES
from tootstack.mirror.errors import DigestMismatch, MirrorError

READ_SIZE = 256 << 10          # bytes per read from the source stream (small: flat, low RSS)
PART_SIZE = 16 << 20           # bytes per PATCH (ECR: 5 MiB .. 20 MiB parts); smaller blobs go in one PUT


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_manifest(body: bytes, header_type: str, digest: str | None, what: str,
                  platform: bool = False) -> tuple[str, dict[str, Any]]:
    """(media type, parsed manifest) of a manifest body fetched by `digest` (verified when given).

    The media type is the answer's Content-Type when it names a manifest type, else the body's `mediaType`.
    Raises DigestMismatch, or MirrorError for what the mirror does not copy: not JSON, Docker schema 1,
    another media type, an index inside an index (`platform=True`: a platform manifest is expected)."""
    if digest is not None:
        actual = sha256_digest(body)
        if actual != digest:
            raise DigestMismatch(f"manifest {what}: content hashes to {actual}")
    try:
        manifest = json.loads(body)
    except ValueError:
        raise MirrorError(f"{what}: manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise MirrorError(f"{what}: manifest is not a JSON object")
    if manifest.get("schemaVersion") == 1 or "signatures" in manifest:
        raise MirrorError(f"{what}: Docker schema 1 manifests are not supported")
    media_type = header_type if header_type in MANIFEST_TYPES else (manifest.get("mediaType") or header_type)
    if media_type not in MANIFEST_TYPES:
        raise MirrorError(f"{what}: unsupported manifest type {media_type!r}")
    if platform and media_type in INDEX_TYPES:
        raise MirrorError(f"{what}: nested indexes are not supported")
    return media_type, manifest


def platform_digests(media_type: str, manifest: dict[str, Any]) -> list[str]:
    """The platform manifests an index lists (none for a single-platform manifest)."""
    if media_type not in INDEX_TYPES:
        return []
    return [entry["digest"] for entry in manifest.get("manifests") or []]


def copy_plan(manifest: dict[str, Any], entries: list[str], fetched: list[Any]) -> tuple[list[tuple[str, bytes, str]], list[dict[str, Any]]]:
    """What to copy: (platform manifests to PUT by digest as (digest, body, media type), blob descriptors
    largest first). `entries`: the index's platform digests (empty for a single-platform manifest);
    `fetched`: for each, (body, media type, parsed) or None when the destination has it complete already
    (a registry only stores a manifest whose blobs it has)."""
    children: list[tuple[str, bytes, str]] = []
    blobs: dict[str, dict[str, Any]] = {}
    for digest, got in zip(entries, fetched):
        if got is not None:
            body, media_type, parsed = got
            children.append((digest, body, media_type))
            collect_blobs(parsed, blobs)
    if not entries:
        collect_blobs(manifest, blobs)
    return children, sorted(blobs.values(), key=lambda d: -int(d.get("size") or 0))   # largest first: not last alone


def collect_blobs(manifest: dict[str, Any], blobs: dict[str, dict[str, Any]]) -> None:
    """Add a platform manifest's config and layers to `blobs` (by digest); foreign (non-distributable) layers
    with `urls` stay where they are."""
    for desc in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
        if desc.get("digest") and not desc.get("urls"):
            blobs.setdefault(desc["digest"], desc)


def hashed_stream(read: Callable[[int], bytes], n: int, hasher: Any, ended: Callable[[int], Exception]) -> Iterator[bytes]:
    """The next `n` bytes of a source blob from `read`, READ_SIZE at a time, each added to `hasher` as it
    passes (memory stays flat); `ended(remaining)` is raised when the source stops early."""
    remaining = n
    while remaining:
        chunk = read(min(READ_SIZE, remaining))
        if not chunk:
            raise ended(remaining)
        hasher.update(chunk)
        remaining -= len(chunk)
        yield chunk

"""Generate multi-arch test images straight into a registry, without holding a layer in memory.

    push_image(registry, "mastodon/mastodon", "v4.5.2", layer_sizes=[8 << 20, 1 << 20])

Every platform gets its own layers: deterministic pseudo-random bytes (seeded by repository, tag,
platform and index, so the same call makes the same image) wrapped in a real gzip stream with
stored blocks (fast, and tools that sniff compression see gzip), each uploaded with chunked PATCH
requests while its digest and diff_id are computed. Then the platform configs and manifests, and
an OCI index tagged last. Returns the index digest and what was pushed.
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import httpx

GEN_CHUNK = 1 << 20
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass
class PushedImage:
    repository: str
    tag: str
    digest: str                                   # the index (or manifest list) digest
    media_type: str
    manifests: dict[str, str] = field(default_factory=dict)    # platform -> manifest digest
    blobs: dict[str, int] = field(default_factory=dict)        # digest -> size (configs and layers)

    @property
    def total_bytes(self) -> int:
        return sum(self.blobs.values())


def _gzip_stream(seed: str, size: int) -> Iterator[tuple[bytes, bytes]]:
    """(raw chunk, gzip bytes for it) pairs; the last pair carries the gzip trailer."""
    rng = random.Random(seed)
    compressor = zlib.compressobj(level=0, wbits=31)
    remaining = size
    while remaining:
        raw = rng.randbytes(min(GEN_CHUNK, remaining))
        remaining -= len(raw)
        yield raw, compressor.compress(raw)
    yield b"", compressor.flush()


def _upload_stream(client: httpx.Client, repository: str, chunks: Iterator[bytes]) -> tuple[str, int]:
    """Upload chunks with one PATCH per chunk batch; return (digest, size)."""
    start = client.post(f"/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"})
    start.raise_for_status()
    location = start.headers["Location"]
    hasher, offset, batch, batch_len = hashlib.sha256(), 0, [], 0

    def flush() -> None:
        nonlocal location, offset, batch, batch_len
        if not batch_len:
            return
        body = b"".join(batch)
        patch = client.patch(location, content=body, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(body) - 1}"})
        patch.raise_for_status()
        location = patch.headers["Location"]
        offset += len(body)
        batch, batch_len = [], 0

    for chunk in chunks:
        if not chunk:
            continue
        hasher.update(chunk)
        batch.append(chunk)
        batch_len += len(chunk)
        if batch_len >= 8 * GEN_CHUNK:
            flush()
    flush()
    digest = "sha256:" + hasher.hexdigest()
    done = client.put(httpx.URL(location).copy_merge_params({"digest": digest}), headers={"Content-Length": "0"})
    done.raise_for_status()
    return digest, offset


def _put_bytes(client: httpx.Client, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if client.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
        return digest
    start = client.post(f"/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"})
    start.raise_for_status()
    client.put(httpx.URL(start.headers["Location"]).copy_merge_params({"digest": digest}), content=data,
               headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    return digest


def push_image(registry: Any, repository: str, tag: str, layer_sizes: list[int] | tuple[int, ...] = (1 << 20,),
               platforms: tuple[str, ...] = DEFAULT_PLATFORMS, docker_format: bool = False,
               client: httpx.Client | None = None, salt: str = "", seed: str | None = None,
               index: bool = True) -> PushedImage:
    """Push a generated multi-arch image to `registry` (a tootstack_dev.local.registry.Registry).

    Content is a function of `seed` (default "<salt><repository>:<tag>") and the platform: the same seed
    under another tag gives identical platform manifests. `index=False` (one platform only) tags the
    platform manifest itself: a single-platform image without an index."""
    if not index and len(platforms) != 1:
        raise ValueError("index=False needs exactly one platform")
    seed = seed if seed is not None else f"{salt}{repository}:{tag}"
    own = client is None
    client = client or registry.client(timeout=120.0)
    layer_type, config_type, manifest_type, index_type = (
        (DOCKER_LAYER, DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_LIST) if docker_format
        else (OCI_LAYER, OCI_CONFIG, OCI_MANIFEST, OCI_INDEX))
    pushed = PushedImage(repository, tag, "", index_type)
    entries = []
    try:
        for platform in platforms:
            os_name, _, arch = platform.partition("/")
            layers, diff_ids = [], []
            for i, size in enumerate(layer_sizes):
                diff = hashlib.sha256()

                def gz(seed: str = f"{seed}:{platform}:{i}", n: int = size) -> Iterator[bytes]:
                    for raw, packed in _gzip_stream(seed, n):
                        diff.update(raw)
                        yield packed

                digest, length = _upload_stream(client, repository, gz())
                diff_ids.append("sha256:" + diff.hexdigest())
                layers.append({"mediaType": layer_type, "digest": digest, "size": length})
                pushed.blobs[digest] = length
            config = json.dumps({
                "architecture": arch, "os": os_name, "created": "2026-11-01T00:00:00Z",
                "config": {"Cmd": ["/bin/true"], "Labels": {"tootstack.test": seed}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }, sort_keys=True).encode()
            config_digest = _put_bytes(client, repository, config)
            pushed.blobs[config_digest] = len(config)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": manifest_type,
                "config": {"mediaType": config_type, "digest": config_digest, "size": len(config)},
                "layers": layers,
            }).encode()
            manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            client.put(f"/v2/{repository}/manifests/{manifest_digest}", content=manifest,
                       headers={"Content-Type": manifest_type}).raise_for_status()
            pushed.manifests[platform] = manifest_digest
            entries.append({"mediaType": manifest_type, "digest": manifest_digest, "size": len(manifest),
                            "platform": {"architecture": arch, "os": os_name}})
        if not index:
            pushed.digest, pushed.media_type = manifest_digest, manifest_type
            client.put(f"/v2/{repository}/manifests/{tag}", content=manifest,
                       headers={"Content-Type": manifest_type}).raise_for_status()
            return pushed
        index_body = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
        pushed.digest = "sha256:" + hashlib.sha256(index_body).hexdigest()
        client.put(f"/v2/{repository}/manifests/{tag}", content=index_body,
                   headers={"Content-Type": index_type}).raise_for_status()
    finally:
        if own:
            client.close()
    return pushed

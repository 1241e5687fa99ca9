"""Image references: `registry[:port]/repo/path:tag` or `...@sha256:<hex>`, Docker Hub shorthands included."""

from __future__ import annotations

import re
from collections import namedtuple

from tootstack.errors import InvalidInput

DOCKER_HUB = "registry-1.docker.io"
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


class ImageRef(namedtuple("ImageRef", "registry repository tag digest", defaults=(None, None))):
    """registry: host[:port] to talk to (docker.io -> registry-1.docker.io); repository: e.g. "library/redis";
    tag and/or digest. Immutable (a named tuple: cheaper to import than dataclasses, which the CLI's
    warm check avoids)."""

    __slots__ = ()
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_ref(text: str, default_tag: str | None = "latest") -> ImageRef:
    """Parse an image reference; raise InvalidInput with the reason when it is malformed."""
    raw = (text or "").strip()
    if not raw or any(c.isspace() for c in raw):
        raise InvalidInput(f"invalid image reference {text!r}: empty or contains spaces")
    digest = None
    if "@" in raw:
        raw, _, digest = raw.partition("@")
        if not _DIGEST.match(digest):
            raise InvalidInput(f"invalid image reference {text!r}: digest must be sha256:<64 hex>")
    tag = None
    last = raw.rsplit("/", 1)[-1]
    if ":" in last:
        raw, _, tag = raw.rpartition(":")
        if not _TAG.match(tag):
            raise InvalidInput(f"invalid image reference {text!r}: bad tag {tag!r}")
    first, sep, rest = raw.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = "docker.io", raw
    if registry in ("docker.io", "index.docker.io", "registry.hub.docker.com"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if not _REPO.match(repository):
        raise InvalidInput(f"invalid image reference {text!r}: bad repository name {repository!r}")
    if tag is None and digest is None:
        tag = default_tag
    return ImageRef(registry, repository, tag, digest)

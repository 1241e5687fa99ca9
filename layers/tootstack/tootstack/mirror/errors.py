"""The mirror's errors (no HTTP client imported: the plain-socket quick copy parses manifests with the copier's code)."""

from __future__ import annotations

from tootstack.errors import TootstackError


class MirrorError(TootstackError):
    """A registry refused or failed an operation (message names the registry and what, never a secret)."""


class ImageNotFound(MirrorError):
    pass


class AuthenticationError(MirrorError):
    pass


class DigestMismatch(MirrorError):
    pass

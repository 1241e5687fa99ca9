"""What one mirror run did (kept free of HTTP-client imports: the CLI's warm check builds one without httpx)."""

from __future__ import annotations

TYPE_CHECKING = False        # `typing` costs the command's warm run 3 ms to import; annotations only
if TYPE_CHECKING:
    from typing import Any


class MirrorResult:
    """Plain class, not a dataclass: importing dataclasses costs the warm CLI run a few milliseconds."""

    def __init__(self, source: str, destination: str, digest: str, media_type: str = "", warm: bool = False,
                 blobs_copied: int = 0, blobs_skipped: int = 0, blobs_mounted: int = 0, bytes_copied: int = 0,
                 manifests_copied: int = 0, source_requests: dict[str, int] | None = None,
                 dest_requests: dict[str, int] | None = None, seconds: float = 0.0) -> None:
        self.source, self.destination, self.digest, self.media_type, self.warm = source, destination, digest, media_type, warm
        self.blobs_copied, self.blobs_skipped, self.blobs_mounted = blobs_copied, blobs_skipped, blobs_mounted
        self.bytes_copied, self.manifests_copied = bytes_copied, manifests_copied
        self.source_requests: dict[str, int] = dict(source_requests or {})
        self.dest_requests: dict[str, int] = dict(dest_requests or {})
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"MirrorResult({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MirrorResult) and vars(self) == vars(other)

    def as_json(self) -> dict[str, Any]:
        """The `tootstack mirror --json` object."""
        return {
            "digest": self.digest,
            "blobs_copied": self.blobs_copied,
            "blobs_skipped": self.blobs_skipped,
            "bytes_copied": self.bytes_copied,
            "source_requests": {"GET": self.source_requests.get("GET", 0), "HEAD": self.source_requests.get("HEAD", 0)},
        }

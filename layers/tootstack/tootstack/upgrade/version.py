"""Mastodon release versions: v4.5.3, v4.5.0-rc.1 (a pre-release sorts before its release)."""

from __future__ import annotations

import re

from tootstack.errors import InvalidInput

# [0-9], not \d: \d also matches "４" and other Unicode digits, which no release tag holds.
VERSION_RE = re.compile(r"v([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?:-(alpha|beta|rc)\.([0-9]{1,3}))?")
_PRE = {"alpha": 0, "beta": 1, "rc": 2}


def parse_version(text: object) -> tuple[int, int, int, int, int]:
    if not isinstance(text, str) or not VERSION_RE.fullmatch(text):
        raise InvalidInput(f"version must look like v4.5.3 (or v4.5.0-rc.1), got {str(text)[:40]!r}")
    m = VERSION_RE.fullmatch(text)
    assert m is not None
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3))
    pre = (_PRE[m.group(4)], int(m.group(5))) if m.group(4) else (9, 0)
    return (major, minor, patch, *pre)


def version_of_image(ref: str) -> str | None:
    """The release version in an image reference's tag (ghcr.io/mastodon/mastodon:v4.5.2[@sha256:...])."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    return tag if VERSION_RE.fullmatch(tag) else None


def compare(target: str, current: str | None) -> str:
    """"upgrade" or "same"; InvalidInput for a downgrade."""
    wanted = parse_version(target)
    if current is None:
        return "upgrade"
    have = parse_version(current)
    if wanted < have:
        raise InvalidInput(f"refusing a downgrade from {current} to {target}: database migrations only go forward")
    return "same" if wanted == have else "upgrade"

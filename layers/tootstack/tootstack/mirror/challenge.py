"""Registry auth helpers with no HTTP client attached: challenge parsing, scopes, Basic header.

Shared by the httpx auth flow (auth.py) and the stdlib warm check (warmcheck.py), which must not import httpx.
"""

from __future__ import annotations

import base64
import re

_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*"([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y"` -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in _PARAM.findall(rest)}


def normalize_scope(scope: str) -> str:
    """`repository:x:push,pull` -> `repository:x:pull,push` (registries vary the order from one challenge to the next)."""
    head, sep, actions = scope.rpartition(":")
    if not sep or not head:
        return scope
    return f"{head}:{','.join(sorted(set(a for a in actions.split(',') if a)))}"


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

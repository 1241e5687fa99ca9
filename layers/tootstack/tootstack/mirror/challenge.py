"""Registry protocol helpers with no HTTP client attached: manifest media types, challenge parsing, scopes,
Basic header, the token request's query and the token service's answer.

Shared by the httpx client and auth flow (client.py, auth.py) and the plain-socket warm check and quick
copy (warmcheck.py, quickcopy.py), which must not import httpx.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
ACCEPT = ", ".join(MANIFEST_TYPES)

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


def token_query(params: dict[str, str], scopes: Iterable[str], username: str | None) -> list[tuple[str, str]]:
    """Query of the token request for a Bearer challenge's `params`: service, every scope (sorted), account."""
    query = [("service", params["service"])] if params.get("service") else []
    query += [("scope", scope) for scope in sorted(scopes)]
    if username is not None:
        query.append(("account", username))
    return query


def token_from_answer(body: bytes) -> tuple[str | None, float]:
    """(token, lifetime in seconds) from the token service's JSON answer; (None, 0.0) when it holds none."""
    try:
        answer = json.loads(body)
        return answer.get("token") or answer.get("access_token") or None, float(answer.get("expires_in") or 60)
    except (ValueError, AttributeError, TypeError):
        return None, 0.0


# Registries whose token service runs on another host, as each registry's operator documents it. Any
# other registry must name a realm on its own host. Docker Hub: registry-1.docker.io answers
# `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`
# (https://distribution.github.io/distribution/spec/auth/token/, https://docs.docker.com/docker-hub/api/latest/).
# Add an entry here (with its documentation) for another registry that delegates to a separate host.
TOKEN_SERVICE_HOSTS: dict[str, tuple[str, ...]] = {
    "registry-1.docker.io": ("auth.docker.io",),
}


def _hostname(netloc: str) -> str:
    return (urlsplit(f"//{netloc}").hostname or "").lower()


def realm_problem(registry: str, realm: str, plain_http: bool = False) -> str:
    """"" when `realm` is `registry`'s own token service, else why credentials must not go there.

    `registry` is host[:port] as contacted. The realm must be https and on the registry's host (any port)
    or a host TOKEN_SERVICE_HOSTS lists for it. Only with the explicit plain-HTTP switch (local registries
    of the rehearsal and tests, which are plain HTTP themselves) may the realm be http."""
    try:
        parts = urlsplit(realm)
        realm_host = (parts.hostname or "").lower()
    except ValueError:
        return "the registry named a malformed token realm"
    if parts.scheme != "https" and not (plain_http and parts.scheme == "http"):
        return f"the registry's token realm {realm[:200]} is not https: refusing to send credentials or ask it for a token"
    host = _hostname(registry)
    allowed = {host, *TOKEN_SERVICE_HOSTS.get(registry.lower(), ()), *TOKEN_SERVICE_HOSTS.get(host, ())}
    if not realm_host or realm_host not in allowed:
        return (f"the registry {registry} named token realm host {realm_host or '(none)'}, which is not its own token "
                f"service ({', '.join(sorted(allowed))}): refusing to send credentials or ask it for a token")
    return ""

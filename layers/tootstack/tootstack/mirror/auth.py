"""Registry authentication for httpx: Basic, and the Docker/OCI bearer-token flow.

A registry answers 401 with `WWW-Authenticate: Basic realm=...` or
`Bearer realm="https://auth...",service="...",scope="repository:name:pull"`. For Bearer we ask the
realm for a token (with Basic credentials when we have them, anonymously otherwise), covering the
challenge's scope plus the scopes this client will need anyway, cache it per registry and replay
the request. Credentials and tokens never appear in exceptions or logs.

Credentials belong to one registry host (as `docker login` keys them in ~/.docker/config.json): the
caller picks them with `credentials_for(registry, keyed)`, and a realm is asked for a token only when
it is https on the registry's own host or its documented token service (challenge.realm_problem);
http only for a registry contacted over plain HTTP by explicit choice (local registries).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any, Generator, Iterable, Mapping

import httpx

from tootstack.errors import InvalidInput
from tootstack.mirror.challenge import (
    basic_header, normalize_scope, parse_challenge, realm_problem, token_from_answer, token_query,
)

DOCKER_HUB = "registry-1.docker.io"
_DOCKER_HUB_NAMES = {"docker.io", "index.docker.io", "registry.hub.docker.com", "registry-1.docker.io"}


def registry_key(name: str) -> str:
    """The host[:port] a credential belongs to: `https://index.docker.io/v1/`, `docker.io` -> registry-1.docker.io
    (docker login's default registry); `ghcr.io`, `127.0.0.1:5000` unchanged (lower-cased, no scheme or path)."""
    host = name.strip().lower()
    for prefix in ("https://", "http://"):
        host = host.removeprefix(prefix)
    host = host.split("/", 1)[0]
    return DOCKER_HUB if host in _DOCKER_HUB_NAMES else host


def credential_pair(entry: Any, where: str, what: str = "source credentials") -> tuple[str, str]:
    """(username, password) from `{"username", "password"}` or docker's `{"auth": base64("user:password")}`;
    InvalidInput naming `what` and `where` (never the values) otherwise."""
    if isinstance(entry, dict) and isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"{what} {where}: 'auth' is not base64 of user:password") from None
        if sep and user:
            return user, password
        raise InvalidInput(f"{what} {where}: 'auth' is not base64 of user:password")
    if isinstance(entry, dict) and isinstance(entry.get("username"), str) and entry.get("username") \
            and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    raise InvalidInput(f"{what} {where}: need string 'username' and 'password' (or docker's 'auth')")


def parse_source_credentials(value: Any) -> dict[str, tuple[str, str]]:
    """Registry host -> (username, password) from the mirror's credentials secret. Shapes:
    `{"auths": {"ghcr.io": {"username", "password"} | {"auth": base64}, ...}}` (docker's config.json);
    `{"username", "password", "registry": "ghcr.io"}`; `{"username", "password"}` alone is Docker Hub's
    (docker login's default registry). No shape sends one credential to every registry."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("source credentials must be a JSON object")
    if "auths" in value:
        auths = value["auths"]
        if not isinstance(auths, dict):
            raise InvalidInput('source credentials: "auths" must map registry hosts to credentials')
        return {registry_key(str(host)): credential_pair(entry, f"for {str(host)[:100]}") for host, entry in auths.items()}
    if "username" in value or "auth" in value:
        registry = value.get("registry") or DOCKER_HUB
        if not isinstance(registry, str):
            raise InvalidInput('source credentials: "registry" must be a host name such as ghcr.io')
        return {registry_key(registry): credential_pair(value, "")}
    raise InvalidInput('source credentials must be {"auths": {"<registry host>": {"username", "password"}}} '
                       'or {"username", "password", "registry"}')


def credentials_for(registry: str, keyed: Mapping[str, tuple[str, str]] | None) -> tuple[str, str] | None:
    """The credentials stored for exactly this registry host, None for any other."""
    return (keyed or {}).get(registry_key(registry))


class AuthFailed(Exception):
    """The registry or its token service refused our credentials (no secret in the message)."""


class RegistryAuth(httpx.Auth):
    """httpx auth flow for one registry host. Thread-safe: one instance is shared by worker threads."""

    requires_request_body = False
    requires_response_body = False

    def __init__(self, username: str | None = None, password: str | None = None, scopes: Iterable[str] = ()) -> None:
        self._username = username
        self._password = password
        self.scopes = {normalize_scope(s) for s in scopes}
        self._lock = threading.Lock()
        self._mode: str | None = None          # None until the registry told us: "basic" | "bearer"
        self._token: str | None = None
        self._token_expiry = 0.0
        self._token_scopes: frozenset[str] = frozenset()
        self._challenge: dict[str, str] = {}
        self.token_requests = 0

    def add_scope(self, scope: str) -> None:
        with self._lock:
            self.scopes.add(normalize_scope(scope))

    def adopt(self, mode: str, token: str | None = None, scopes: Iterable[str] = (), challenge: dict[str, str] | None = None,
              lifetime: float = 0.0) -> None:
        """Start from what another client of this process just learned about the registry (warmcheck.py): its
        auth scheme, and a bearer token when it covers every scope this client needs. Saves the 401 round trips."""
        wanted = frozenset(normalize_scope(s) for s in scopes)
        with self._lock:
            if self._mode is not None:
                return
            if mode == "basic" and self._username is not None:
                self._mode = "basic"
            elif mode == "bearer" and token and challenge and "realm" in challenge and self.scopes <= wanted:
                self._mode, self._token, self._token_scopes = "bearer", token, wanted
                self._token_expiry = time.monotonic() + max(lifetime - 10, 5)
                self._challenge = dict(challenge)

    def _apply(self, request: httpx.Request) -> None:
        if self._mode == "basic" and self._username is not None:
            request.headers["Authorization"] = basic_header(self._username, self._password or "")
        elif self._mode == "bearer" and self._token and time.monotonic() < self._token_expiry:
            request.headers["Authorization"] = f"Bearer {self._token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            refresh = self._mode == "bearer" and time.monotonic() >= self._token_expiry and bool(self._challenge)
            challenge, wanted = dict(self._challenge), set(self._token_scopes)
        if refresh:
            # Tokens live minutes (Docker Hub: 300 s): renew before a long upload whose body cannot be replayed.
            yield from self._fetch_token(challenge, wanted)
        with self._lock:
            self._apply(request)
        sent_auth = "Authorization" in request.headers
        response = yield request
        if response.status_code != 401:
            return
        header = response.headers.get("www-authenticate", "")
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if self._username is None:
                return  # no credentials: the caller sees the 401
            with self._lock:
                if self._mode == "basic" and sent_auth:
                    return  # our credentials were refused
                self._mode = "basic"
                self._apply(request)
        elif scheme == "bearer" and "realm" in params:
            problem = realm_problem(request.url.netloc.decode("ascii"), params["realm"], request.url.scheme == "http")
            if problem:
                raise AuthFailed(problem)
            wanted = set(self.scopes)
            if params.get("scope"):
                wanted.update(normalize_scope(s) for s in params["scope"].split(" ") if s)
            with self._lock:
                stale = not (self._token and frozenset(wanted) <= self._token_scopes and not sent_auth)
            if stale:
                yield from self._fetch_token(params, wanted)
            with self._lock:
                self._apply(request)
        else:
            return
        if isinstance(request.stream, httpx.ByteStream) or request.method in ("GET", "HEAD", "DELETE"):
            yield request
        # a streaming body cannot be replayed: the caller sees the 401 and retries the whole operation

    def _fetch_token(self, params: dict[str, str], wanted: set[str]) -> Generator[httpx.Request, httpx.Response, None]:
        token_response = yield self._token_request(params, wanted)
        token_response.read()
        self.token_requests += 1
        if token_response.status_code in (401, 403):
            raise AuthFailed(f"token service {params['realm']} refused the credentials (HTTP {token_response.status_code})")
        if token_response.status_code != 200:
            raise AuthFailed(f"token service {params['realm']} answered HTTP {token_response.status_code}")
        token, lifetime = token_from_answer(token_response.content)
        if not token:
            raise AuthFailed(f"token service {params['realm']} returned no token")
        with self._lock:
            self._mode = "bearer"
            self._token = token
            self._token_scopes = frozenset(wanted)
            self._token_expiry = time.monotonic() + max(lifetime - 10, 5)
            self._challenge = dict(params)

    def _token_request(self, params: dict[str, str], scopes: set[str]) -> httpx.Request:
        headers = {}
        if self._username is not None:
            headers["Authorization"] = basic_header(self._username, self._password or "")
        return httpx.Request("GET", params["realm"], params=token_query(params, scopes, self._username), headers=headers)

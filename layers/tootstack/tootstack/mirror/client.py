"""One registry, spoken to over the OCI distribution API with httpx: auth, retries, request counts."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import httpx

from tootstack.errors import DependencyUnavailable
from tootstack.mirror.auth import AuthFailed, RegistryAuth
from tootstack.mirror.challenge import ACCEPT
from tootstack.mirror.errors import AuthenticationError, DigestMismatch, ImageNotFound, MirrorError  # noqa: F401 - re-exported
from tootstack.mirror.tls import tls_context


class TransientError(Exception):
    """Worth retrying: 5xx, 429, connection reset/refused/timeout."""

    def __init__(self, message: str, retry_after: float | None = None, unreachable: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable


@dataclass
class RetryPolicy:
    attempts: int = 5
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.cap, self.base * (2 ** attempt)) * (0.5 + random.random() / 2)


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def classify(response: httpx.Response, what: str) -> None:
    """Raise TransientError for retryable statuses."""
    if response.status_code == 429:
        raise TransientError(f"{what}: HTTP 429 (rate limited)", retry_after_seconds(response.headers.get("retry-after")))
    if response.status_code >= 500:
        raise TransientError(f"{what}: HTTP {response.status_code}", retry_after_seconds(response.headers.get("retry-after")))


class RegistryClient:
    def __init__(self, registry: str, username: str | None = None, password: str | None = None,
                 plain_http: bool = False, retry: RetryPolicy | None = None, timeout: float = 60.0,
                 scopes: Iterable[str] = (), max_connections: int = 16,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.registry = registry
        self.base_url = f"{'http' if plain_http else 'https'}://{registry}"
        self.retry = retry or RetryPolicy()
        self.counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._sleep = sleep
        self.auth = RegistryAuth(username, password, scopes)
        host = httpx.URL(self.base_url)
        self._host = (host.host, host.port)
        self.http = httpx.Client(
            base_url=self.base_url, auth=self.auth, follow_redirects=True,
            # plain HTTP (local registries) needs no TLS context: building one costs ~15 ms per client
            verify=False if plain_http else tls_context(),  # nosec B501 - only for http:// URLs
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            event_hooks={"request": [self._count]},
            headers={"User-Agent": "tootstack-mirror/0.1"},
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, request: httpx.Request) -> None:
        # Only requests to the registry itself: token-service round trips are not pulls.
        if (request.url.host, request.url.port) == self._host:
            with self._counts_lock:
                self.counts[request.method] += 1

    # -- plumbing ---------------------------------------------------------------------------------
    def send(self, method: str, url: str | httpx.URL, what: str, **kwargs: Any) -> httpx.Response:
        """One request with retries on transient failures; auth failures and unreachable hosts become clear errors."""
        attempt = 0
        while True:
            try:
                response = self._send_once(method, url, what, **kwargs)
                classify(response, what)
                return response
            except TransientError as exc:
                attempt += 1
                if attempt >= self.retry.attempts:
                    if exc.unreachable:
                        raise DependencyUnavailable(f"{exc} after {attempt} attempts") from None
                    raise MirrorError(f"{what}: gave up after {attempt} attempts ({exc})") from None
                self._sleep(self.retry.delay(attempt - 1, exc.retry_after))

    def _send_once(self, method: str, url: str | httpx.URL, what: str, stream: bool = False,
                   follow_redirects: bool = True, **kwargs: Any) -> httpx.Response:
        try:
            request = self.http.build_request(method, url, **kwargs)
            response = self.http.send(request, stream=stream, follow_redirects=follow_redirects)
        except AuthFailed as exc:
            raise AuthenticationError(f"{self.registry}: authentication failed: {exc}") from None
        except httpx.ConnectError as exc:
            raise TransientError(f"registry {self.registry} unreachable ({type(exc).__name__})", unreachable=True) from None
        except (httpx.TransportError,) as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None
        if response.status_code == 401:
            response.close()
            raise AuthenticationError(f"{self.registry}: authentication failed for {what} (HTTP 401): check the credentials")
        if response.status_code == 403:
            response.close()
            raise AuthenticationError(f"{self.registry}: access denied for {what} (HTTP 403)")
        return response

    # -- manifests --------------------------------------------------------------------------------
    def head_manifest(self, repository: str, reference: str) -> tuple[str, str, int] | None:
        """(digest, media type, size) or None when the registry has no such manifest."""
        what = f"HEAD manifest {self.registry}/{repository}:{reference}"
        response = self.send("HEAD", f"/v2/{repository}/manifests/{reference}", what, headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise MirrorError(f"{what}: HTTP {response.status_code}")
        digest = response.headers.get("docker-content-digest")
        if not digest and reference.startswith("sha256:"):
            digest = reference
        return digest or "", response.headers.get("content-type", "").split(";")[0], int(response.headers.get("content-length") or 0)

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        what = f"GET manifest {self.registry}/{repository}:{reference}"
        response = self.send("GET", f"/v2/{repository}/manifests/{reference}", what, headers={"Accept": ACCEPT})
        if response.status_code == 404:
            raise ImageNotFound(f"image not found: {self.registry}/{repository}:{reference}")
        if response.status_code != 200:
            raise MirrorError(f"{what}: HTTP {response.status_code}")
        return response.content, response.headers.get("content-type", "").split(";")[0]

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        what = f"PUT manifest {self.registry}/{repository}:{reference}"
        response = self.send("PUT", f"/v2/{repository}/manifests/{reference}", what,
                             content=body, headers={"Content-Type": media_type})
        if response.status_code not in (200, 201):
            raise MirrorError(f"{what}: HTTP {response.status_code}: {_error_text(response)}")
        return response.headers.get("docker-content-digest", "")

    # -- blobs ------------------------------------------------------------------------------------
    def blob_exists(self, repository: str, digest: str) -> bool:
        what = f"HEAD blob {self.registry}/{repository}@{digest[:19]}"
        # A redirect means the blob exists in the registry's storage: not followed, since a storage URL
        # pre-signed for GET (ECR, Docker Hub's CDN) refuses HEAD.
        response = self.send("HEAD", f"/v2/{repository}/blobs/{digest}", what, follow_redirects=False)
        if response.status_code in (200, 301, 302, 303, 307, 308):
            return True
        if response.status_code == 404:
            return False
        raise MirrorError(f"{what}: HTTP {response.status_code}")

    def start_upload(self, repository: str, mount: str | None = None, mount_from: str | None = None) -> str | None:
        """An upload session URL, or None when the blob was mounted from `mount_from`."""
        params = {"mount": mount, "from": mount_from} if mount and mount_from else None
        what = f"POST upload {self.registry}/{repository}"
        response = self.send("POST", f"/v2/{repository}/blobs/uploads/", what, params=params,
                             headers={"Content-Length": "0"})
        if response.status_code == 201 and params:
            return None
        if response.status_code != 202 or "location" not in response.headers:
            raise MirrorError(f"{what}: HTTP {response.status_code}: {_error_text(response)}")
        return self.absolute(response.headers["location"])

    def absolute(self, location: str) -> str:
        return str(httpx.URL(self.base_url).join(location))

    def upload_offset(self, location: str) -> int | None:
        """Bytes the registry holds for an upload session, None when the session is gone."""
        try:
            response = self._send_once("GET", location, "GET upload status")
        except (TransientError, MirrorError):
            return None
        if response.status_code != 204:
            return None
        value = response.headers.get("range", "")
        if not value:
            return 0
        try:
            return int(value.rpartition("-")[2]) + 1
        except ValueError:
            return None

    def cancel_upload(self, location: str) -> None:
        try:
            self._send_once("DELETE", location, "DELETE upload").close()
        except Exception:  # best effort: an abandoned session is purged by the registry
            pass


def _error_text(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)[:300]
    except Exception:
        return response.reason_phrase

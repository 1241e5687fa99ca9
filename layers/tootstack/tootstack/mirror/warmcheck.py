"""The CLI's warm check: is DEST already at SRC's digest? HEAD requests only, over plain sockets.

`tootstack mirror` runs mostly as a scheduled no-op: the destination already has the image. That answer
takes two manifest HEADs (plus the registries' auth round trips), and in a fresh process importing httpx
and its dependencies costs several times more than the requests themselves; even the standard library's
`http.client` costs more than the requests (it loads the `email` package to parse headers). So the
command first asks over a minimal HTTP/1.1 exchange on a socket (wire.py: one request at a time per
connection, kept alive, Content-Length or chunked bodies), the source and the destination at the same
time; only when the digests differ, or anything at all is unexpected (no digest header, a redirect, an
auth refusal, a network error, a malformed answer), does it load the full copier (httpx), which then
does the whole job with its own retries and error messages. The check never raises and never prints:
at worst it costs a few requests, HEAD only on the source. With a proxy configured in the environment
(which httpx honours and a plain socket does not) it stands aside and the copier does the whole job.

Auth flows are those of the copier (auth.py): an anonymous first request, then on a 401 either Basic
with the given credentials or the bearer-token flow (token service asked with Basic credentials for the
repository's pull scope), the request replayed once.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import urlencode, urlsplit

from tootstack.mirror.challenge import (
    ACCEPT, basic_header, normalize_scope, parse_challenge, realm_problem, token_from_answer, token_query,
)
from tootstack.mirror.refs import ImageRef
from tootstack.mirror.wire import USER_AGENT, Pool, Unexpected

TYPE_CHECKING = False        # `typing` costs the command's warm run 3 ms to import; annotations only
if TYPE_CHECKING:
    from typing import Any

# httpx honours these (trust_env); a plain socket does not: with a proxy configured the check stands aside.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


class _Registry:
    """HEAD manifests on one registry over kept-alive connections (one per scheme/host), answering its challenge."""

    def __init__(self, registry: str, creds: tuple[str, str] | None, plain_http: bool) -> None:
        self.scheme = "http" if plain_http else "https"
        self.registry = registry
        self.creds = creds
        self.auth_state: dict[str, Any] = {}     # what the copier's RegistryAuth.adopt takes
        self.pool = Pool()

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.pool.counts.get(self.registry, {}))

    def _request(self, scheme: str, netloc: str, method: str, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        conn = self.pool.connection(scheme, netloc)
        self.pool.count(netloc, method)
        return conn.request(method, target, {"User-Agent": USER_AGENT, **headers})

    def head_manifest(self, repository: str, reference: str) -> tuple[int, str, str]:
        """(status, Docker-Content-Digest, media type) of HEAD /v2/<repository>/manifests/<reference>."""
        target = f"/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ACCEPT}
        status, answer, _ = self._request(self.scheme, self.registry, "HEAD", target, headers)
        if status == 401:
            headers["Authorization"] = self._authorization(answer.get("www-authenticate", ""), repository)
            status, answer, _ = self._request(self.scheme, self.registry, "HEAD", target, headers)
        return status, answer.get("docker-content-digest", ""), answer.get("content-type", "").split(";")[0]

    def _authorization(self, challenge: str, repository: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic" and self.creds is not None:
            self.auth_state = {"mode": "basic"}
            return basic_header(*self.creds)
        if scheme != "bearer" or "realm" not in params:
            raise Unexpected("challenge")
        if realm_problem(self.registry, params["realm"], self.scheme == "http"):
            raise Unexpected("realm")  # the copier's auth flow refuses it and says why
        scopes = {normalize_scope(f"repository:{repository}:pull")}
        scopes.update(normalize_scope(s) for s in params.get("scope", "").split(" ") if s)
        query = token_query(params, scopes, self.creds[0] if self.creds is not None else None)
        headers = {"Authorization": basic_header(*self.creds)} if self.creds is not None else {}
        realm = urlsplit(params["realm"])
        target = (realm.path or "/") + "?" + "&".join(filter(None, (realm.query, urlencode(query))))
        status, _, body = self._request(realm.scheme, realm.netloc, "GET", target, headers)
        if status != 200:
            raise Unexpected("token")
        token, lifetime = token_from_answer(body)
        if not token:
            raise Unexpected("token")
        self.auth_state = {"mode": "bearer", "token": token, "scopes": sorted(scopes), "challenge": params,
                           "lifetime": lifetime}
        return f"Bearer {token}"


class WarmCheck:
    """Outcome of `warm_check`: `warm` is True only when the destination tag has the source's digest."""

    def __init__(self) -> None:
        self.warm = False
        self.digest = ""                     # the source manifest's digest ("" when the check could not tell)
        self.media_type = ""
        self.dest_digest: str | None = None  # the destination tag's digest, "" when absent, None when unknown
        self.source_requests: dict[str, int] = {}
        self.source_auth: dict[str, Any] = {}   # auth state learned, for RegistryAuth.adopt
        self.dest_auth: dict[str, Any] = {}
        self.pool: Pool | None = None           # the check's open connections, for the quick copy (not when warm)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def warm_check(src: ImageRef, dst: ImageRef, tag: str, src_creds: tuple[str, str] | None,
               dest_creds: tuple[str, str] | None, plain_http: bool) -> WarmCheck:
    """HEAD SRC's manifest and DEST's `tag` concurrently; never raises (a failure just means "not known warm")."""
    check = WarmCheck()
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES):
        return check
    source = _Registry(src.registry, src_creds, plain_http)
    dest = _Registry(dst.registry, dest_creds, plain_http)
    dest_answer: list[Any] = []

    def ask_dest() -> None:
        try:
            dest_answer.append(dest.head_manifest(dst.repository, tag))
        except Exception:  # any failure: let the full copier do (and report) the work
            pass

    helper = threading.Thread(target=ask_dest, name="mirror-warmcheck", daemon=True)
    helper.start()
    try:
        status, digest, media_type = source.head_manifest(src.repository, src.reference)
        if status == 200 and digest.startswith("sha256:") and (not src.digest or digest == src.digest):
            check.digest, check.media_type = digest, media_type
    except Exception:  # same: fall back to the copier
        pass
    finally:
        helper.join()
        check.source_requests = source.counts
        source.pool.adopt(dest.pool)             # one pool: the quick copy's first worker starts on these sockets
    if dest_answer and dest_answer[0][0] in (200, 404):
        check.dest_digest = dest_answer[0][1] if dest_answer[0][0] == 200 else ""
    check.source_auth = source.auth_state
    if dest.auth_state.get("mode") == "basic":      # a bearer token from the check only has the pull scope
        check.dest_auth = dest.auth_state
    check.warm = bool(check.digest) and check.dest_digest == check.digest
    if check.warm or not check.digest:
        source.pool.close()
    else:
        check.pool = source.pool
    return check

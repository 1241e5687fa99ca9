"""The docker-registry harness: each auth mode starts, enforces auth, and moves blobs."""

import hashlib
import os

import httpx
import pytest

from tootstack.errors import InvalidInput
from tootstack_dev.local.registry import Registry
from tootstack.mirror.auth import AuthFailed


def _roundtrip(registry, client):
    data = os.urandom(4096)
    digest = registry.push_blob("harness/test", data, client)
    assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    got = client.get(f"/v2/harness/test/blobs/{digest}")
    assert got.status_code == 200 and got.content == data
    assert client.head(f"/v2/harness/test/blobs/{digest}").status_code == 200


def test_plain_registry_is_open(registry_plain):
    assert registry_plain.host_port == f"127.0.0.1:{registry_plain.port}"
    assert httpx.get(f"{registry_plain.url}/v2/").status_code == 200
    with registry_plain.client() as client:
        _roundtrip(registry_plain, client)


def test_basic_registry_enforces_credentials(registry_basic):
    unauthenticated = httpx.get(f"{registry_basic.url}/v2/")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].lower().startswith("basic")
    with registry_basic.client(password="wrong-password") as bad:
        assert bad.get("/v2/").status_code == 401
        assert bad.post("/v2/harness/test/blobs/uploads/").status_code == 401
    with registry_basic.client() as client:
        assert client.get("/v2/").status_code == 200
        _roundtrip(registry_basic, client)


def test_token_registry_issues_scoped_tokens(registry_token):
    unauthenticated = httpx.get(f"{registry_token.url}/v2/")
    assert unauthenticated.status_code == 401
    challenge = unauthenticated.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and registry_token.token_server.realm in challenge
    # the token service itself refuses anonymous and wrong credentials
    assert httpx.get(registry_token.token_server.realm, params={"service": "x"}).status_code == 401
    with registry_token.client(password="wrong-password") as bad, pytest.raises(AuthFailed):
        bad.get("/v2/")
    with registry_token.client() as client:
        _roundtrip(registry_token, client)
    assert registry_token.token_requests >= 2
    granted = [s.rsplit(":", 1) for s in registry_token.token_server.scopes_requested]
    assert any(name == "repository:harness/test" and set(actions.split(",")) == {"pull", "push"} for name, actions in granted)


def test_token_without_push_scope_cannot_push(registry_token):
    with registry_token.client() as client:
        client.auth.scopes = set()
        token = httpx.get(registry_token.token_server.realm,
                          params={"service": "tootstack-registry", "scope": "repository:harness/test:pull"},
                          auth=(registry_token.username, registry_token.password)).json()["token"]
        denied = httpx.post(f"{registry_token.url}/v2/harness/test/blobs/uploads/",
                            headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 401


def test_access_log_counts_requests(registry_plain):
    mark = registry_plain.mark()
    with registry_plain.client() as client:
        client.head("/v2/harness/none/manifests/latest")
        client.get("/v2/harness/none/manifests/latest")
    counts = [m for m, _, _ in registry_plain.requests_since(mark)]
    assert counts == ["HEAD", "GET"]


def test_unknown_auth_mode_is_rejected():
    with pytest.raises(InvalidInput):
        Registry(auth="kerberos")

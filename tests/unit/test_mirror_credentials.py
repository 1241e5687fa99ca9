"""Source-registry credentials go only to the registry they belong to, and only over TLS to that
registry's own token service.

Facts relied on: `docker login` stores one credential per registry host in ~/.docker/config.json
`auths` (https://docs.docker.com/reference/cli/docker/login/), and without a server name logs in to
Docker Hub; a registry's 401 `WWW-Authenticate: Bearer realm=...` names the token service the client
then calls with its Basic credentials (https://distribution.github.io/distribution/spec/auth/token/);
Docker Hub's registry-1.docker.io names realm https://auth.docker.io/token.
"""

import base64

import httpx
import pytest

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import project_root
from tootstack.mirror.auth import AuthFailed, RegistryAuth, credentials_for, parse_source_credentials, registry_key
from tootstack.mirror.challenge import realm_problem

ROOT = project_root()
SECRET = "hub-password-never-elsewhere-1234"


def test_legacy_shape_is_docker_hub_only():
    keyed = parse_source_credentials({"username": "hubuser", "password": SECRET})
    assert credentials_for("registry-1.docker.io", keyed) == ("hubuser", SECRET)
    assert credentials_for("ghcr.io", keyed) is None
    assert credentials_for("evil.example:443", keyed) is None


def test_docker_config_auths_are_keyed_by_host():
    keyed = parse_source_credentials({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw1").decode()},
        "ghcr.io": {"username": "gh", "password": "pw2"},
        "127.0.0.1:5000": {"username": "local", "password": "pw3"},
    }})
    assert credentials_for("registry-1.docker.io", keyed) == ("hub", "pw1")
    assert credentials_for("GHCR.io", keyed) == ("gh", "pw2")
    assert credentials_for("127.0.0.1:5000", keyed) == ("local", "pw3")
    assert credentials_for("127.0.0.1:5001", keyed) is None
    assert registry_key("docker.io") == registry_key("index.docker.io") == "registry-1.docker.io"


@pytest.mark.parametrize("value", [[], "x", {"auths": []}, {"auths": {"ghcr.io": {"username": "a"}}},
                                   {"username": 1, "password": "x"}, {"user": "a"}, {"auths": {"h": {"auth": "!!"}}}])
def test_malformed_credential_secrets_are_invalid_input(value):
    with pytest.raises(InvalidInput):
        parse_source_credentials(value)


@pytest.mark.parametrize("registry, realm, plain_http, ok", [
    ("ghcr.io", "https://ghcr.io/token", False, True),
    ("registry-1.docker.io", "https://auth.docker.io/token", False, True),
    ("registry-1.docker.io", "https://auth.docker.io.evil.example/token", False, False),
    ("ghcr.io", "https://auth.docker.io/token", False, False),
    ("ghcr.io", "http://ghcr.io/token", False, False),
    ("ghcr.io", "https://evil.example/token", False, False),
    ("ghcr.io", "ftp://ghcr.io/token", False, False),
    ("127.0.0.1:5000", "http://127.0.0.1:5001/token", True, True),     # the local plain-HTTP switch
    ("127.0.0.1:5000", "http://127.0.0.1:5001/token", False, False),
    ("127.0.0.1:5000", "http://localhost:5001/token", True, False),
])
def test_realm_must_be_the_registrys_own_token_service(registry, realm, plain_http, ok):
    assert (realm_problem(registry, realm, plain_http) == "") is ok


def _flow(registry, realm, username="hubuser"):
    """RegistryAuth against an httpx MockTransport registry that challenges with `realm`; returns the
    requests the client made (URL, Authorization header)."""
    seen = []

    def answer(request):
        seen.append((str(request.url), request.headers.get("authorization", "")))
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"token": "t0ken", "expires_in": 300})
        if request.headers.get("authorization") == "Bearer t0ken":
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"www-authenticate": f'Bearer realm="{realm}",service="svc",scope="repository:x:pull"'})

    with httpx.Client(transport=httpx.MockTransport(answer), auth=RegistryAuth(username, SECRET)) as client:
        try:
            client.get(f"https://{registry}/v2/x/manifests/latest")
        except AuthFailed as exc:
            return seen, str(exc)
    return seen, ""


@pytest.mark.parametrize("realm", ["http://ghcr.io/token", "https://evil.example/token", "https://auth.docker.io/token"])
def test_no_token_request_goes_to_a_plain_http_or_foreign_realm(realm):
    seen, error = _flow("ghcr.io", realm)
    assert "refusing to send credentials" in error and SECRET not in error
    assert [url for url, _ in seen] == ["https://ghcr.io/v2/x/manifests/latest"]


def test_docker_hub_token_service_gets_the_credentials():
    seen, error = _flow("registry-1.docker.io", "https://auth.docker.io/token")
    assert error == ""
    token_calls = [(url, auth) for url, auth in seen if url.startswith("https://auth.docker.io/token")]
    assert len(token_calls) == 1 and token_calls[0][1].startswith("Basic ")

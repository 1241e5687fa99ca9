"""Source-registry credentials with real registries (docker-registry) and the mirror Lambda in moto: Docker Hub
credentials never reach another registry, and keyed credentials work with the rehearsal's plain-http hub. The
parsing and token-realm rules are in tests/unit/test_mirror_credentials.py (facts and sources there)."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from tests.unit.test_mirror_credentials import ROOT, SECRET
from tootstack.mirror.auth import credentials_for, parse_source_credentials
from tootstack_dev.local.aws import LambdaContext
from tootstack_dev.local.ecr import ecr_registry
from tootstack_dev.local.images import push_image
from tootstack_dev.local.template import LocalFunction


class _Recorder(BaseHTTPRequestHandler):
    """A registry that asks for Basic credentials and records every Authorization header it gets."""

    headers_seen: list = []

    def do_GET(self):  # http.server API
        self._answer()

    def do_HEAD(self):
        self._answer()

    def _answer(self):
        type(self).headers_seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="recorder"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_mirror_lambda_sends_docker_hub_credentials_to_no_other_registry(monkeypatch, registry_basic):
    _Recorder.headers_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    foreign = f"127.0.0.1:{server.server_port}"
    try:
        with mock_aws(), ecr_registry(registry_basic):   # moto's ECR names the stand-in as the account's registry
            secret = boto3.client("secretsmanager").create_secret(
                Name="hub-creds", SecretString=json.dumps({"username": "hubuser", "password": SECRET}))
            monkeypatch.setenv("REPOSITORIES", json.dumps({"mastodon": "tootstack-mastodon"}))
            monkeypatch.setenv("PARAMETER_PREFIX", "/tootstack/images")
            monkeypatch.setenv("SOURCE_CREDENTIALS_SECRET_ARN", secret["ARN"])
            fn = LocalFunction("CredsMirrorFunction", ROOT / "functions/mirror", "app.handler", {})
            with pytest.raises(Exception):  # the foreign registry refuses: any mirror error
                fn.entrypoint({"images": [{"source": f"{foreign}/mastodon/mastodon:v4.5.2", "repository": "mastodon"}]},
                              LambdaContext("mirror"))
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.headers_seen, "the foreign registry was asked"
    sent = " ".join(_Recorder.headers_seen)
    assert base64.b64encode(f"hubuser:{SECRET}".encode()).decode() not in sent and SECRET not in sent


def test_the_rehearsals_plain_http_hub_still_works_with_keyed_credentials(registry_token, registry_basic):
    from tootstack.mirror.copier import mirror_image

    pushed = push_image(registry_token, "mastodon/mastodon", "v4.5.2", [4096])
    keyed = parse_source_credentials({"auths": {registry_token.host_port: {
        "username": registry_token.username, "password": registry_token.password}}})
    result = mirror_image(f"{registry_token.host_port}/mastodon/mastodon:v4.5.2", f"{registry_basic.host_port}/m:v4.5.2",
                          src_creds=credentials_for(registry_token.host_port, keyed),
                          dest_creds=(registry_basic.username, registry_basic.password), plain_http=True)
    assert result.digest == pushed.digest

"""The opt-in integration tier (tests/integration) is runnable: it is run here, as `make integration` would run
it, against the rehearsal's deployment of template.yaml in moto, served over HTTP by moto's own server.

The stack is deployed by the rehearsal's deploy stage (offline SAM transform, moto CloudFormation, every
Lambda function routed to its real handler) inside LocalAws; moto's ThreadedMotoServer, in this process,
serves the same backends, so the tier, started as another process with AWS_ENDPOINT_URL pointing at it,
reads that stack and invokes its preflight function (run by its real handler). The site is a stand-in for
Mastodon on loopback with a certificate for the rehearsal's domain, reached through TOOTSTACK_SITE_ADDRESS;
it answers only for that Host, as a stack that forwards the viewer's Host does. Controls: a stack name that
does not exist fails every test, and without TOOTSTACK_STACK_NAME every test is skipped with the reason."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tootstack_dev.local.aws import LocalAws
from tootstack_dev.local.network import free_port, write_test_certificates
from tootstack_dev.local.template import load_template, project_root
from tootstack_dev.rehearsal import deploy
from tootstack_dev.rehearsal.context import RehearsalContext

ROOT = project_root()
REGION = "us-east-1"
STACK = "tootstack-integration"
DOMAIN = deploy.REHEARSAL_DOMAIN

pytestmark = pytest.mark.xdist_group("integration-tier")   # one worker deploys the module's stack once


class _Mastodon(BaseHTTPRequestHandler):
    """/health and /api/v2/instance, for requests whose Host is the stack's domain only."""

    def do_GET(self):  # http.server API
        if self.headers.get("Host", "").split(":")[0] != DOMAIN:
            return self._answer(421, b"misdirected request")
        if self.path == "/health":
            return self._answer(200, b"OK")
        if self.path == "/api/v2/instance":
            return self._answer(200, json.dumps({"domain": DOMAIN, "title": "stand-in"}).encode())
        return self._answer(404, b"")

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served_stack(tmp_path_factory):
    """The environment that points the integration tier at the deployed stack."""
    from moto.server import ThreadedMotoServer

    certs = write_test_certificates(tmp_path_factory.mktemp("site"), DOMAIN)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    site = ThreadingHTTPServer(("127.0.0.1", 0), _Mastodon)
    site.socket = context.wrap_socket(site.socket, server_side=True)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    with LocalAws(region=REGION) as aws:
        ctx = RehearsalContext(root=ROOT, stack_name=STACK, region=REGION, parameters={}, progress=lambda line: None)
        ctx.sam_template = load_template(ROOT / "template.yaml")
        ctx.aws = aws
        deploy.run(ctx)
        # moto's CloudFormation does not create AWS::SES::EmailIdentity (the rehearsal reports it skipped);
        # the identity is created here as the stack's EmailIdentity resource would create it
        skipped = {s["logical_id"]: s["type"] for s in ctx.skipped}
        assert "AWS::SES::EmailIdentity" in skipped.values(), skipped
        aws.client("sesv2").create_email_identity(EmailIdentity=DOMAIN)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            yield {"TOOTSTACK_STACK_NAME": STACK, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                   "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "TOOTSTACK_SITE_ADDRESS": f"127.0.0.1:{site.server_port}", "SSL_CERT_FILE": str(certs.ca)}
        finally:
            server.stop()
            site.shutdown()
            site.server_close()


def _run_tier(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TOOTSTACK_"))} | environment
    return subprocess.run([sys.executable, "-m", "pytest", "tests/integration", "-p", "no:randomly", "-p",
                           "no:cacheprovider", "-q", "-rA"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)


def test_the_integration_tier_passes_against_the_rehearsals_stack(served_stack):
    run = _run_tier(served_stack)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "5 passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


def test_control_a_stack_that_does_not_exist_fails_every_test(served_stack):
    run = _run_tier(served_stack | {"TOOTSTACK_STACK_NAME": "no-such-stack"})
    assert run.returncode == 1 and "5 error" in run.stdout and "passed" not in run.stdout, run.stdout[-2000:]
    assert "Stack with id no-such-stack does not exist" in run.stdout


def test_without_a_stack_name_every_test_is_skipped_with_the_reason():
    run = _run_tier({})
    assert run.returncode == 0 and "5 skipped" in run.stdout and "passed" not in run.stdout, run.stdout[-2000:]
    assert "opt-in tier: set TOOTSTACK_STACK_NAME" in run.stdout

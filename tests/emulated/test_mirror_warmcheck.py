"""The CLI's warm check speaks HTTP/1.1 on a plain socket (warmcheck._Connection): its framing against the
standard library's own HTTP server, and what a warm `tootstack mirror` run loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tootstack_dev.local.images import push_image
from tootstack.mirror import mirror_image
from tootstack.mirror.wire import Connection as _Connection, Unexpected as _Unexpected

TOKEN = json.dumps({"token": "t0k", "expires_in": 300}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive; bodies framed by Content-Length or chunks

    def log_message(self, *args):        # quiet
        pass

    def do_HEAD(self):  # http.server API
        self.send_response(200)
        self.send_header("Docker-Content-Digest", "sha256:" + "a" * 64)
        self.send_header("Content-Length", "1234")        # a HEAD answer announces a body it does not send
        self.end_headers()

    def do_GET(self):  # http.server API
        self.server.seen.append(self.path)
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (TOKEN[:7], TOKEN[7:]):
                self.wfile.write(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\nX-Trailer: 1\r\n\r\n")
        elif self.path.startswith("/close"):
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(TOKEN)
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(TOKEN)))
            self.end_headers()
            self.wfile.write(TOKEN)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_connection_frames_bodies_and_keeps_the_connection(server):
    """Framing per RFC 9112 section 6 (Content-Length, chunked with extensions and trailers, close-delimited),
    checked against Python's http.server (Lib/http/server.py), which we did not write."""
    conn = _Connection("http", f"127.0.0.1:{server.server_address[1]}")
    status, headers, body = conn.request("HEAD", "/v2/x/manifests/v1", {})
    assert (status, body, headers["docker-content-digest"]) == (200, b"", "sha256:" + "a" * 64)
    assert conn.request("GET", "/token?scope=a", {})[2] == TOKEN           # same connection, after the HEAD
    assert conn.request("GET", "/chunked", {})[2] == TOKEN
    assert conn.open
    assert conn.request("GET", "/close", {})[2] == TOKEN
    assert not conn.open
    conn.close()
    assert server.seen == ["/token?scope=a", "/chunked", "/close"]


def test_connection_refuses_what_is_not_http(server):
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def answer():
        peer, _ = listener.accept()
        peer.recv(65536)
        peer.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        peer.close()

    threading.Thread(target=answer, daemon=True).start()
    conn = _Connection("http", f"127.0.0.1:{listener.getsockname()[1]}")
    with pytest.raises(_Unexpected):
        conn.request("HEAD", "/", {})
    conn.close()
    listener.close()


def test_warm_run_loads_neither_httpx_nor_http_client(registry_token, registry_basic):
    """A warm `python -m tootstack_dev.mirror` imports no HTTP client library at all, nor the other commands' modules."""
    hub, ecr = registry_token, registry_basic
    push_image(hub, "mastodon/mastodon", "v4.5.2", [10_000])
    mirror_image(f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon:v4.5.2",
                 src_creds=(hub.username, hub.password), dest_creds=(ecr.username, ecr.password), plain_http=True)
    env = dict(os.environ, TOOTSTACK_SRC_CREDS=hub.creds, TOOTSTACK_DEST_CREDS=ecr.creds)
    args = ["--plain-http", "--json", f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon"]
    for entry in (["-m", "tootstack_dev.mirror"], ["-m", "tootstack_dev.cli", "mirror"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", *entry, *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout)["source_requests"] == {"GET": 0, "HEAD": 2}
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "tootstack.mirror.warmcheck" in imported
        assert not {"httpx", "http.client", "email.parser", "tootstack_dev.local.template", "tootstack_dev.rehearsal.cli"} & imported

"""The CLI's cold copy over plain sockets (quickcopy.py) against real registries, and its hand-over to the
httpx copier when anything is unexpected."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.emulated.test_mirror import creds
from tootstack_dev import cli
from tootstack_dev.local.faultproxy import FaultProxy
from tootstack_dev.local.images import push_image
from tootstack.mirror import parse_ref, quickcopy
from tootstack.mirror.challenge import ACCEPT
from tootstack.mirror.quickcopy import quick_copy
from tootstack.mirror.warmcheck import warm_check

MIB = 1 << 20


def assert_complete_copy(registry, repository, tag, pushed):
    """The tag names `pushed.digest` (an index or a single manifest) and every manifest and blob is there,
    with the same bytes (sha256 recomputed)."""
    with registry.client() as client:
        head = client.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT})
        assert head.status_code == 200 and head.headers["docker-content-digest"] == pushed.digest
        for digest in [pushed.digest, *pushed.manifests.values()]:
            got = client.get(f"/v2/{repository}/manifests/{digest}", headers={"Accept": ACCEPT})
            assert got.status_code == 200 and "sha256:" + hashlib.sha256(got.content).hexdigest() == digest
        for digest, size in pushed.blobs.items():
            got = client.get(f"/v2/{repository}/blobs/{digest}")
            assert got.status_code == 200 and len(got.content) == size
            assert "sha256:" + hashlib.sha256(got.content).hexdigest() == digest


def _quick(src_host, src_reg, dst_reg, ref="mastodon/mastodon:v4.5.2", dest_repo="mastodon", concurrency=4):
    src, dst = parse_ref(f"{src_host}/{ref}"), parse_ref(f"{dst_reg.host_port}/{dest_repo}", default_tag=None)
    tag = src.tag
    check = warm_check(src, dst, tag, creds(src_reg), creds(dst_reg), plain_http=True)
    assert check.digest and check.dest_digest == "" and not check.warm
    return quick_copy(src, dst, tag, check, creds(src_reg), creds(dst_reg), True, concurrency)


@pytest.mark.parametrize("index", [True, False], ids=["two-platform index", "single-platform manifest"])
def test_cli_cold_copy_without_httpx(registry_token, registry_basic, index):
    """A cold `python -m tootstack_dev.mirror` copies every manifest and blob and never imports httpx."""
    hub, ecr = registry_token, registry_basic
    platforms = ("linux/amd64", "linux/arm64") if index else ("linux/amd64",)
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [300_000, 20_000], platforms=platforms, index=index)
    env = dict(os.environ, TOOTSTACK_SRC_CREDS=hub.creds, TOOTSTACK_DEST_CREDS=ecr.creds)
    mark = hub.mark()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tootstack_dev.mirror", "--plain-http", "--json",
                           f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "tootstack.mirror.quickcopy" in imported and "httpx" not in imported
    out = json.loads(proc.stdout)
    blobs = len(pushed.blobs)
    manifests = 1 + (len(platforms) if index else 0)
    assert out == {"digest": pushed.digest, "blobs_copied": blobs, "blobs_skipped": 0,
                   "bytes_copied": sum(pushed.blobs.values()),
                   "source_requests": {"GET": manifests + blobs, "HEAD": 2}}
    served = hub.requests_since(mark)
    assert sum(1 for m, _, _ in served if m == "GET") == manifests + blobs      # the source's own access log agrees
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_large_blobs_go_in_one_patch_and_present_blobs_are_skipped(registry_token, registry_basic, monkeypatch):
    hub, ecr = registry_token, registry_basic
    monkeypatch.setattr(quickcopy, "PART_SIZE", 300_000)
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [1_000_000, 10_000])
    present = min(pushed.blobs, key=pushed.blobs.get)          # one blob the destination already holds
    with hub.client() as client:
        ecr.push_blob("mastodon", client.get(f"/v2/mastodon/mastodon/blobs/{present}").content)
    with FaultProxy(ecr) as proxy:                              # counts what reaches the destination
        src, dst = parse_ref(f"{hub.host_port}/mastodon/mastodon:v4.5.2"), parse_ref(f"{proxy.host_port}/mastodon")
        check = warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True)
        result, source_requests = quick_copy(src, dst, "v4.5.2", check, creds(hub), creds(ecr), True, 2)
        patches = proxy.counts["PATCH"]
    assert result is not None and result.blobs_skipped == 1 and result.blobs_copied == len(pushed.blobs) - 1
    assert result.manifests_copied == 3 and result.source_requests == source_requests
    assert patches == sum(1 for size in pushed.blobs.values() if size > 300_000)     # one streamed PATCH per big layer
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_blob_redirect_is_followed_without_the_registrys_credentials(registry_token, registry_basic):
    """Docker Hub and ghcr.io answer blob GETs with a redirect to storage pre-signed for GET: the storage host
    must not receive the registry's bearer token."""
    hub, ecr = registry_token, registry_basic
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [50_000], platforms=("linux/amd64",), index=False)
    layer = max(pushed.blobs, key=pushed.blobs.get)
    with hub.client() as client:
        data = client.get(f"/v2/mastodon/mastodon/blobs/{layer}").content
    seen: list[str | None] = []

    class Storage(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # http.server API
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    storage = ThreadingHTTPServer(("127.0.0.1", 0), Storage)
    threading.Thread(target=storage.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with FaultProxy(hub) as proxy:
            proxy.add("GET", f"/blobs/{layer}", "status", status=307,
                      location=f"http://127.0.0.1:{storage.server_address[1]}/signed/{layer[7:]}?X-Amz-Signature=x")
            result, _ = _quick(proxy.host_port, hub, ecr)
    finally:
        storage.shutdown()
        storage.server_close()
    assert result is not None and seen == [None]
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_anything_unexpected_hands_over_to_the_copier(registry_token, registry_basic, capsys):
    """A 500 on the tag PUT stops the quick copy (it never retries); the httpx copier finishes the job,
    skipping the platform manifests (and so their blobs) that landed, and writes the tag last."""
    hub, ecr = registry_token, registry_basic
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [40_000, 10])
    with FaultProxy(ecr) as proxy:
        proxy.add("PUT", r"/manifests/v4\.5\.2$", "status", status=500)
        argv = ["mirror", "--plain-http", "--src-creds", hub.creds, "--dest-creds", ecr.creds, "--json",
                f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{proxy.host_port}/mastodon:v4.5.2"]
        assert cli.main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert proxy.rules[0].fired == 1
    # the copier found both platform manifests in place (so their blobs): it fetched the index again, tagged it
    assert out["digest"] == pushed.digest and out["blobs_copied"] == 0 and out["bytes_copied"] == 0
    assert out["source_requests"] == {"GET": (3 + len(pushed.blobs)) + 1, "HEAD": 2}   # quick copy's, then 1
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_a_token_registry_as_destination_is_left_to_the_copier(registry_token, registry_basic):
    hub, other = registry_token, registry_basic
    push_image(other, "mastodon/mastodon", "v4.5.2", [10_000])
    src, dst = parse_ref(f"{other.host_port}/mastodon/mastodon:v4.5.2"), parse_ref(f"{hub.host_port}/mirror")
    check = warm_check(src, dst, "v4.5.2", creds(other), creds(hub), plain_http=True)
    mark = hub.mark()
    assert quick_copy(src, dst, "v4.5.2", check, creds(other), creds(hub), True, 4) == (None, {})
    assert hub.requests_since(mark) == []


def test_stops_before_using_a_source_token_about_to_expire(registry_token, registry_basic, monkeypatch):
    """Docker Hub tokens live 300 s: the quick copy does not renew them, the copier does (auth.py)."""
    hub, ecr = registry_token, registry_basic
    push_image(hub, "mastodon/mastodon", "v4.5.2", [10_000])
    src, dst = parse_ref(f"{hub.host_port}/mastodon/mastodon:v4.5.2"), parse_ref(f"{ecr.host_port}/mastodon")
    check = warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True)
    clock = iter([0.0] + [3600.0] * 100)          # the token was fetched, then an hour passed
    monkeypatch.setattr(quickcopy.time, "monotonic", lambda: next(clock))
    mark = hub.mark()
    result, source_requests = quick_copy(src, dst, "v4.5.2", check, creds(hub), creds(ecr), True, 4)
    assert result is None and source_requests == {} and hub.requests_since(mark) == []


LEAN = Path(__file__).resolve().parents[2] / "bin" / "tootstack-mirror"


def _lean_argv() -> list[str]:
    """bin/tootstack-mirror as its `#!` line runs it, on this interpreter."""
    shebang = LEAN.read_text().splitlines()[0]
    assert shebang == "#!/usr/bin/env -S python3 -I -S"     # isolated, no site-packages at start
    return [sys.executable, "-I", "-S", str(LEAN)]


def test_lean_command_checks_and_copies_without_site_packages(registry_token, registry_basic):
    """bin/tootstack-mirror copies cold and answers warm with the standard library and tootstack alone: no
    site-packages start-up (`site`, its .pth hooks such as an editable install's finder or a CA-bundle patch),
    and the environment's PYTHONPATH does not choose the code it runs (-I)."""
    hub, ecr = registry_token, registry_basic
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [300_000, 20_000], platforms=("linux/amd64", "linux/arm64"))
    env = dict(os.environ, TOOTSTACK_SRC_CREDS=hub.creds, TOOTSTACK_DEST_CREDS=ecr.creds, PYTHONPATH="/nonexistent")
    args = ["--plain-http", "--json", f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon"]
    outs = []
    for _phase in ("cold", "warm"):
        proc = subprocess.run([*_lean_argv()[:3], "-X", "importtime", *_lean_argv()[3:], *args], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "tootstack.mirror.warmcheck" in imported
        assert not {"site", "httpx", "certifi", "_distutils_hack", "http.client"} & imported, imported
        outs.append(json.loads(proc.stdout))
    assert outs[0]["digest"] == outs[1]["digest"] == pushed.digest
    assert outs[0]["blobs_copied"] == len(pushed.blobs)
    assert outs[1]["source_requests"] == {"GET": 0, "HEAD": 2}
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_lean_command_loads_site_packages_for_the_full_copier(registry_token):
    """A job only the full copier does (here a copy within one registry: a cross-repository mount) adds
    site-packages when it needs httpx, so the lean start never costs a copy."""
    hub = registry_token
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [50_000])
    env = dict(os.environ, TOOTSTACK_SRC_CREDS=hub.creds, TOOTSTACK_DEST_CREDS=hub.creds)
    proc = subprocess.run([*_lean_argv(), "--plain-http", "--json", f"{hub.host_port}/mastodon/mastodon:v4.5.2",
                           f"{hub.host_port}/mirror/mastodon"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["digest"] == pushed.digest and out["blobs_copied"] == 0 and out["blobs_skipped"] == len(pushed.blobs)
    assert_complete_copy(hub, "mirror/mastodon", "v4.5.2", pushed)


def test_quick_copy_continues_on_the_warm_checks_connections(registry_token, registry_basic, monkeypatch):
    """One pool: the check's kept-alive connections (source, its token service, destination) carry the quick
    copy's requests, so one worker opens no connection (against a remote registry: no TCP or TLS handshake)."""
    hub, ecr = registry_token, registry_basic
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [200_000, 10_000], platforms=("linux/amd64",), index=False)
    src, dst = parse_ref(f"{hub.host_port}/mastodon/mastodon:v4.5.2"), parse_ref(f"{ecr.host_port}/mastodon", default_tag=None)
    check = warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True)
    opened = []
    real = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    result, _ = quick_copy(src, dst, "v4.5.2", check, creds(hub), creds(ecr), True, 1)
    assert result is not None and result.digest == pushed.digest and result.blobs_copied == len(pushed.blobs)
    assert opened == []
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)

"""The image copier against real registries: token-auth "Docker Hub" source, basic-auth "ECR" destination."""

import hashlib
import json
import tracemalloc

import pytest

from tootstack_dev import cli
from tootstack.errors import DependencyUnavailable, InvalidInput
from tootstack_dev.local.faultproxy import FaultProxy
from tootstack_dev.local.images import push_image
from tootstack_dev.local.network import free_port
from tootstack.mirror import mirror_image, parse_ref
from tootstack.mirror.client import AuthenticationError, DigestMismatch, ImageNotFound, MirrorError, RegistryClient, RetryPolicy
from tootstack.mirror.copier import Mirror

FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05)
MIB = 1 << 20


@pytest.fixture
def hub(registry_token):
    return registry_token


@pytest.fixture
def ecr(registry_basic):
    return registry_basic


def creds(registry):
    return (registry.username, registry.password) if registry.username else None


def mirror(src_reg, src_ref, dst_reg, dst_ref, src_host=None, dst_host=None, part_size=MIB, sleep=None, **kwargs):
    """Run the copier with clients we can inspect; returns (result, mirror)."""
    src, dst = parse_ref(f"{src_host or src_reg.host_port}/{src_ref}"), parse_ref(f"{dst_host or dst_reg.host_port}/{dst_ref}", default_tag=None)
    extra = {"sleep": sleep} if sleep else {}
    source = RegistryClient(src.registry, *(creds(src_reg) or (None, None)), plain_http=True, retry=FAST, **extra)
    dest = RegistryClient(dst.registry, *(creds(dst_reg) or (None, None)), plain_http=True, retry=FAST)
    with source, dest:
        copier = Mirror(source, dest, part_size=part_size, **kwargs)
        return copier.copy(src, dst), copier


def dest_state(registry, repository, tag):
    with registry.client() as client:
        head = client.head(f"/v2/{repository}/manifests/{tag}",
                           headers={"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"})
        return head.headers.get("docker-content-digest") if head.status_code == 200 else None


def assert_complete_copy(registry, repository, tag, pushed):
    """Every manifest and blob of `pushed` is in `registry` with the same bytes (sha256 recomputed)."""
    assert dest_state(registry, repository, tag) == pushed.digest
    with registry.client() as client:
        for manifest_digest in pushed.manifests.values():
            got = client.get(f"/v2/{repository}/manifests/{manifest_digest}",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
            assert got.status_code == 200 and "sha256:" + hashlib.sha256(got.content).hexdigest() == manifest_digest
        for digest, size in pushed.blobs.items():
            hasher, n = hashlib.sha256(), 0
            with client.stream("GET", f"/v2/{repository}/blobs/{digest}") as blob:
                assert blob.status_code == 200
                for chunk in blob.iter_raw():
                    hasher.update(chunk)
                    n += len(chunk)
            assert ("sha256:" + hasher.hexdigest(), n) == (digest, size)


# -- cold, warm, formats ------------------------------------------------------------------------

def test_cold_then_warm_copy_of_a_multi_arch_index(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [3 * MIB + 123, 200_000, 10])
    result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert result.digest == pushed.digest and not result.warm
    assert result.blobs_copied == len(pushed.blobs) == 8 and result.blobs_skipped == 0
    assert result.bytes_copied == pushed.total_bytes
    assert result.source_requests["GET"] == 3 + 8       # index + 2 platform manifests + 8 blobs
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)

    mark = hub.mark()
    warm, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert warm.warm and warm.digest == pushed.digest and warm.blobs_copied == 0
    assert warm.source_requests.get("GET", 0) == 0
    # the source registry's own access log agrees: HEAD only
    assert {method for method, _, _ in hub.requests_since(mark)} == {"HEAD"}


def test_docker_manifest_list_copies_with_its_media_type(hub, ecr):
    pushed = push_image(hub, "tootsuite/mastodon", "v4.3.0", [100_000], docker_format=True)
    result, _ = mirror(hub, "tootsuite/mastodon:v4.3.0", ecr, "mastodon")     # tag defaults to the source's
    assert result.digest == pushed.digest and result.media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert_complete_copy(ecr, "mastodon", "v4.3.0", pushed)


def test_pinned_digest_source_and_single_platform_manifest(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon-streaming", "v4.5.2", [50_000])
    amd64 = pushed.manifests["linux/amd64"]
    result, _ = mirror(hub, f"mastodon/mastodon-streaming@{amd64}", ecr, "mastodon-streaming:amd64")
    assert result.digest == amd64 and result.blobs_copied == 2   # config + layer of one platform
    with ecr.client() as client:
        assert client.head("/v2/mastodon-streaming/manifests/amd64",
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).headers["docker-content-digest"] == amd64


def test_retag_of_a_digest_the_destination_has_needs_no_source_get(hub, ecr):
    push_image(hub, "mastodon/mastodon", "v4.5.2", [10_000])
    mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:stable")
    assert not result.warm and result.source_requests.get("GET", 0) == 0 and result.blobs_copied == 0
    assert dest_state(ecr, "mastodon", "stable") == result.digest


def test_platform_manifests_already_present_are_skipped(hub, ecr):
    """A new index whose amd64/arm64 manifests the destination has: only the new platform is fetched and copied."""
    mirror_v1 = push_image(hub, "mastodon/mastodon", "v1", [20_000, 30_000], seed="same")
    mirror(hub, "mastodon/mastodon:v1", ecr, "mastodon:v1")
    v2 = push_image(hub, "mastodon/mastodon", "v2", [20_000, 30_000], seed="same",
                    platforms=("linux/amd64", "linux/arm64", "linux/s390x"))
    assert v2.manifests["linux/amd64"] == mirror_v1.manifests["linux/amd64"]
    result, _ = mirror(hub, "mastodon/mastodon:v2", ecr, "mastodon:v2")
    assert result.digest == v2.digest
    assert result.blobs_copied == 3 and result.blobs_skipped == 0          # s390x config + 2 layers
    assert result.source_requests["GET"] == 2 + 3                          # index, s390x manifest, 3 blobs
    assert_complete_copy(ecr, "mastodon", "v2", v2)


def test_blobs_present_in_destination_are_skipped_by_head(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [30_000, 40_000])
    with ecr.client() as client:   # pre-seed one layer in the destination repository
        layer = next(d for d, s in pushed.blobs.items() if s > 30_000)
        data = hub.client().get(f"/v2/mastodon/mastodon/blobs/{layer}").content
        ecr.push_blob("mastodon", data, client)
    result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert result.blobs_skipped == 1 and result.blobs_copied == len(pushed.blobs) - 1
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_cross_repository_mount_within_one_registry(registry_plain):
    pushed = push_image(registry_plain, "upstream/mastodon", "v4.5.2", [100_000, 5_000])
    result, _ = mirror(registry_plain, "upstream/mastodon:v4.5.2", registry_plain, "mirror/mastodon:v4.5.2")
    assert result.blobs_mounted == len(pushed.blobs) and result.bytes_copied == 0 and result.blobs_copied == 0
    blob_gets = [p for m, p, _ in registry_plain.requests() if m == "GET" and "/blobs/sha256" in p]
    assert blob_gets == []
    assert_complete_copy(registry_plain, "mirror/mastodon", "v4.5.2", pushed)


def test_mount_from_another_destination_repository(hub, ecr):
    """mastodon and mastodon-streaming share base layers in ECR: mount instead of re-uploading."""
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [60_000])
    mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon-streaming:v4.5.2", mount_from=("mastodon",))
    assert result.blobs_mounted == len(pushed.blobs) and result.bytes_copied == 0
    assert_complete_copy(ecr, "mastodon-streaming", "v4.5.2", pushed)


def test_memory_stays_flat_with_a_large_layer(registry_plain, ecr):
    """Python allocations during a 24 MiB layer copy stay around the read/part buffers, not the layer size."""
    push_image(registry_plain, "big/image", "v1", [24 * MIB], platforms=("linux/amd64",))
    tracemalloc.start()
    try:
        result, _ = mirror(registry_plain, "big/image:v1", ecr, "big:v1", part_size=4 * MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.bytes_copied > 24 * MIB
    assert peak < 8 * MIB, f"peak Python allocation {peak} bytes"


# -- faults: no partial tag, clean resume --------------------------------------------------------

def test_500_mid_blob_resumes_after_the_last_acknowledged_part(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [5 * MIB], platforms=("linux/amd64",))
    with FaultProxy(ecr) as proxy:
        rule = proxy.add("PATCH", r"/blobs/uploads/", "status", status=500, skip=2)   # third part of the big blob
        result, copier = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", dst_host=proxy.host_port)
    assert rule.fired == 1 and copier.resumed_parts == 1
    assert result.digest == pushed.digest
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_connection_drop_mid_blob_is_retried(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [3 * MIB], platforms=("linux/amd64",))
    with FaultProxy(hub) as proxy:
        rule = proxy.add("GET", r"/blobs/sha256:", "drop", after=1_500_000)
        result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", src_host=proxy.host_port,
                           concurrency=1)
    assert rule.fired == 1 and result.digest == pushed.digest
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_persistent_failure_leaves_no_tag_and_rerun_resumes(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [2 * MIB, 100_000])
    big = [d for d, s in pushed.blobs.items() if s > MIB]
    with FaultProxy(hub) as proxy:
        for digest in big:
            proxy.add("GET", digest, "status", status=503, times=None)
        with pytest.raises(MirrorError):
            mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", src_host=proxy.host_port)
    assert dest_state(ecr, "mastodon", "v4.5.2") is None            # nothing tagged
    for manifest in pushed.manifests.values():                       # no platform manifest either
        with ecr.client() as client:
            assert client.head(f"/v2/mastodon/manifests/{manifest}").status_code == 404
    result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert result.blobs_copied == len(big)                           # only what had not landed
    assert result.blobs_skipped == len(pushed.blobs) - len(big)
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_digest_mismatch_fails_without_tag_and_blob(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [300_000], platforms=("linux/amd64",))
    layer = next(d for d, s in pushed.blobs.items() if s > 200_000)
    with FaultProxy(hub) as proxy:
        proxy.add("GET", layer, "corrupt", after=1234, times=None)
        with pytest.raises(DigestMismatch) as caught:
            mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", src_host=proxy.host_port)
    assert layer in str(caught.value)
    assert dest_state(ecr, "mastodon", "v4.5.2") is None
    with ecr.client() as client:
        assert client.head(f"/v2/mastodon/blobs/{layer}").status_code == 404
    result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert result.digest == pushed.digest
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_corrupt_manifest_is_a_digest_mismatch(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [1000])
    with FaultProxy(hub) as proxy:
        proxy.add("GET", pushed.digest, "corrupt", after=5)
        with pytest.raises(DigestMismatch):
            mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", src_host=proxy.host_port)
    assert dest_state(ecr, "mastodon", "v4.5.2") is None


def test_429_retry_after_is_honoured(hub, ecr):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [1000])
    slept = []
    with FaultProxy(hub) as proxy:
        proxy.add("GET", r"/manifests/", "status", status=429, retry_after="7")
        result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", src_host=proxy.host_port,
                           sleep=slept.append)
    assert slept == [7.0] and result.digest == pushed.digest


# -- errors ---------------------------------------------------------------------------------------

def test_unknown_image(hub, ecr):
    push_image(hub, "mastodon/mastodon", "v4.5.2", [1000])
    with pytest.raises(ImageNotFound, match="image not found"):
        mirror(hub, "mastodon/mastodon:v9.9.9", ecr, "mastodon:v9.9.9")


def test_auth_failure_names_the_registry_not_the_password(hub, ecr):
    hub_password = hub.password
    hub.password = "wrong-password-123"
    with pytest.raises(AuthenticationError) as caught:
        mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert hub.host_port in str(caught.value) and "wrong-password-123" not in str(caught.value)
    hub.password = hub_password
    ecr.password = "wrong-password-456"
    push_image(hub, "mastodon/mastodon", "v4.5.2", [1000])
    with pytest.raises(AuthenticationError) as caught:
        mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    assert ecr.host_port in str(caught.value) and "wrong-password-456" not in str(caught.value)


def test_unreachable_registry():
    with pytest.raises(DependencyUnavailable, match="unreachable"):
        mirror_image(f"127.0.0.1:{free_port()}/a/b:v1", f"127.0.0.1:{free_port()}/c:v1", plain_http=True, retry=FAST)


@pytest.mark.parametrize("text, expected", [
    ("docker.io/tootsuite/mastodon:v4.5.2", ("registry-1.docker.io", "tootsuite/mastodon", "v4.5.2", None)),
    ("redis", ("registry-1.docker.io", "library/redis", "latest", None)),
    ("127.0.0.1:5101/mastodon/mastodon:v4.5.2", ("127.0.0.1:5101", "mastodon/mastodon", "v4.5.2", None)),
    ("ghcr.io/mastodon/mastodon-streaming@sha256:" + "a" * 64, ("ghcr.io", "mastodon/mastodon-streaming", None, "sha256:" + "a" * 64)),
    ("localhost/x:1", ("localhost", "x", "1", None)),
])
def test_parse_ref(text, expected):
    ref = parse_ref(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected


@pytest.mark.parametrize("text", ["", "UPPER/case:v1", "a/b:bad tag", "a/b@sha256:short", "a/b:" + "x" * 200, "a//b"])
def test_parse_ref_rejects(text):
    with pytest.raises(InvalidInput):
        parse_ref(text)


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_json_cold_and_warm(hub, ecr, capsys):
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [50_000])
    argv = ["mirror", "--plain-http", "--src-creds", hub.creds, "--dest-creds", ecr.creds, "--json",
            f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon:v4.5.2"]
    assert cli.main(argv) == 0
    cold = json.loads(capsys.readouterr().out)
    assert set(cold) == {"digest", "blobs_copied", "blobs_skipped", "bytes_copied", "source_requests"}
    assert cold["digest"] == pushed.digest and cold["blobs_copied"] == 4 and cold["source_requests"]["GET"] == 7
    assert cli.main(argv) == 0
    warm = json.loads(capsys.readouterr().out)
    assert warm["source_requests"]["GET"] == 0 and warm["blobs_copied"] == 0 and warm["digest"] == pushed.digest


def test_cli_errors_exit_non_zero_with_a_clear_message(hub, ecr, capsys):
    push_image(hub, "mastodon/mastodon", "v4.5.2", [1000])
    base = ["mirror", "--plain-http", "--src-creds", hub.creds, "--dest-creds", ecr.creds]
    assert cli.main(base + [f"{hub.host_port}/mastodon/mastodon:nope", f"{ecr.host_port}/mastodon"]) == 1
    assert "image not found" in capsys.readouterr().err
    assert cli.main(["mirror", "--plain-http", "--src-creds", "hubuser:bad-secret-xyz", "--dest-creds", ecr.creds,
                     f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon"]) == 1
    err = capsys.readouterr().err
    assert "authentication failed" in err and "bad-secret-xyz" not in err
    assert cli.main(base + ["Not A Ref", f"{ecr.host_port}/mastodon"]) == 2
    assert "invalid image reference" in capsys.readouterr().err
    assert cli.main(["mirror", "--src-creds", "nocolon", "a/b:c", "d/e:f"]) == 2
    assert cli.main(base + [f"{hub.host_port}/a/b:c", f"{ecr.host_port}/d@sha256:{'0' * 64}"]) == 2
    assert cli.main(base + [f"{hub.host_port}/a/b@sha256:{'0' * 64}", f"{ecr.host_port}/d"]) == 2
    assert "needs a tag" in capsys.readouterr().err
    assert dest_state(ecr, "mastodon", "v4.5.2") is None


# -- interoperability with skopeo ---------------------------------------------------------------

def test_skopeo_copy_all_gives_the_same_digests_as_ours(hub, ecr):
    from tootstack_dev.local.skopeo import skopeo_copy

    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [300_000, 20_000])
    ours, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "ours/mastodon:v4.5.2")
    skopeo_copy(f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/skopeo/mastodon:v4.5.2",
                hub.creds, ecr.creds)
    assert ours.digest == pushed.digest == dest_state(ecr, "skopeo/mastodon", "v4.5.2")
    assert_complete_copy(ecr, "skopeo/mastodon", "v4.5.2", pushed)
    # and skopeo reads what we wrote: copy our mirror onward, digest preserved
    skopeo_copy(f"{ecr.host_port}/ours/mastodon:v4.5.2", f"{ecr.host_port}/onward/mastodon:v4.5.2", ecr.creds, ecr.creds)
    assert dest_state(ecr, "onward/mastodon", "v4.5.2") == pushed.digest
    # ours reads what skopeo wrote (a Docker manifest list made by skopeo's own push path is also fine)
    again, _ = mirror(ecr, "skopeo/mastodon:v4.5.2", ecr, "from-skopeo/mastodon:v4.5.2")
    assert again.digest == pushed.digest and again.blobs_mounted == len(pushed.blobs)


def test_cli_unreachable_and_digest_mismatch(hub, ecr, capsys, monkeypatch):
    import tootstack.mirror.client as client_module

    monkeypatch.setattr(client_module, "RetryPolicy", lambda: FAST)   # the CLI's default policy, without the waits
    assert cli.main(["mirror", "--plain-http", f"127.0.0.1:{free_port()}/a/b:v1", f"{ecr.host_port}/b:v1"]) == 1
    assert "unreachable" in capsys.readouterr().err
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [20_000], platforms=("linux/amd64",))
    layer = next(d for d, s in pushed.blobs.items() if s > 10_000)
    with FaultProxy(hub) as proxy:
        proxy.add("GET", layer, "corrupt", after=77, times=None)
        code = cli.main(["mirror", "--plain-http", "--src-creds", hub.creds, "--dest-creds", ecr.creds,
                         f"{proxy.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon:v4.5.2"])
    assert code == 1 and "hashes to" in capsys.readouterr().err
    assert dest_state(ecr, "mastodon", "v4.5.2") is None



def test_expired_bearer_token_is_renewed_before_the_next_request(hub):
    """A long copy outlives Docker Hub's 300 s tokens: renew first, so a streamed upload never meets a 401."""
    push_image(hub, "mastodon/mastodon", "v4.5.2", [1000])
    with RegistryClient(hub.host_port, hub.username, hub.password, plain_http=True, retry=FAST) as client:
        assert client.head_manifest("mastodon/mastodon", "v4.5.2") is not None
        issued = client.auth.token_requests
        client.auth._token_expiry = 0  # simulate the clock passing the token's lifetime
        mark = hub.mark()
        assert client.head_manifest("mastodon/mastodon", "v4.5.2") is not None
    assert client.auth.token_requests == issued + 1
    assert [status for _, _, status in hub.requests_since(mark)] == [200]


def test_standalone_entry_point_copies_with_env_credentials(hub, ecr):
    """`python -m tootstack_dev.mirror` (what the benchmark and scheduled jobs run), credentials from the environment."""
    import os
    import subprocess
    import sys

    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [30_000])
    env = dict(os.environ, TOOTSTACK_SRC_CREDS=hub.creds, TOOTSTACK_DEST_CREDS=ecr.creds)
    proc = subprocess.run([sys.executable, "-m", "tootstack_dev.mirror", "--plain-http", "--json",
                           f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["digest"] == pushed.digest
    assert hub.password not in proc.stdout + proc.stderr


def test_blobs_are_copied_concurrently(hub, ecr):
    """The proxy holds each source blob GET until two are in flight: a one-at-a-time copier never gets there."""
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [20_000, 30_000])
    with FaultProxy(hub) as proxy:
        gate = proxy.add("GET", r"/blobs/sha256:", "gate", count=3, times=None)
        result, _ = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", src_host=proxy.host_port, concurrency=4)
    assert result.digest == pushed.digest
    assert gate.max_in_flight >= 3


def test_lost_patch_response_restarts_the_blob_cleanly(hub, ecr):
    """The registry stored a part but its answer was lost: our checkpoint no longer matches, so the blob starts over."""
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [4 * MIB], platforms=("linux/amd64",))
    with FaultProxy(ecr) as proxy:
        rule = proxy.add("PATCH", r"/blobs/uploads/", "lost", skip=1)   # second part: stored, answer lost
        result, copier = mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2", dst_host=proxy.host_port)
    assert rule.fired == 1 and copier.resumed_parts == 0 and copier.restarted_blobs == 1
    assert result.digest == pushed.digest
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)


def test_blob_redirect_to_storage_counts_as_present_without_following(registry_plain):
    """ECR and Docker Hub answer blob HEADs with a redirect to storage pre-signed for GET: never follow it."""
    with FaultProxy(registry_plain) as proxy:
        proxy.add("HEAD", r"/blobs/sha256:", "status", status=307, location=f"http://127.0.0.1:{free_port()}/s3", times=None)
        with RegistryClient(proxy.host_port, plain_http=True, retry=FAST) as client:
            assert client.blob_exists("any/repo", "sha256:" + "1" * 64) is True
        assert proxy.counts["HEAD"] == 1


# -- the CLI's stdlib warm check (warmcheck.py) and its hand-over to the copier -----------------------

def test_warm_check_answers_with_head_only_and_never_raises(hub, ecr):
    from tootstack.mirror.warmcheck import warm_check

    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [20_000])
    src, dst = parse_ref(f"{hub.host_port}/mastodon/mastodon:v4.5.2"), parse_ref(f"{ecr.host_port}/mastodon:v4.5.2")
    mark = hub.mark()
    cold = warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True)
    assert not cold.warm and cold.digest == pushed.digest and cold.dest_digest == ""
    assert cold.source_auth["mode"] == "bearer" and cold.dest_auth == {"mode": "basic"}
    assert {method for method, _, _ in hub.requests_since(mark)} == {"HEAD"}
    mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    mark = hub.mark()
    warm = warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True)
    assert warm.warm and warm.digest == warm.dest_digest == pushed.digest and warm.source_requests == {"HEAD": 2}
    assert {method for method, _, _ in hub.requests_since(mark)} == {"HEAD"}     # the source's own access log
    # refused credentials, unknown image, unreachable registry: "not known warm", never an exception
    assert not warm_check(src, dst, "v4.5.2", ("x", "wrong"), creds(ecr), plain_http=True).warm
    assert not warm_check(parse_ref(f"{hub.host_port}/mastodon/nope:v1"), dst, "v1", creds(hub), creds(ecr), plain_http=True).warm
    gone = warm_check(src, parse_ref(f"127.0.0.1:{free_port()}/mastodon:v4.5.2"), "v4.5.2", creds(hub), creds(ecr), plain_http=True)
    assert not gone.warm and gone.dest_digest is None and gone.digest == pushed.digest


def test_cli_cold_run_reuses_the_warm_checks_answers_and_token(hub, ecr, capsys):
    """Cold through the CLI: the check's source HEAD and token serve the copier too (one token, one HEAD)."""
    pushed = push_image(hub, "mastodon/mastodon", "v4.5.2", [40_000, 10])
    argv = ["mirror", "--plain-http", "--src-creds", hub.creds, "--dest-creds", ecr.creds, "--json",
            f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon:v4.5.2"]
    tokens, mark = hub.token_server.requests, hub.mark()
    assert cli.main(argv) == 0
    cold = json.loads(capsys.readouterr().out)
    served = hub.requests_since(mark)
    assert cold["digest"] == pushed.digest and cold["source_requests"] == {"GET": 3 + 6, "HEAD": 2}
    assert sorted(m for m, _, _ in served) == sorted(["HEAD"] * 2 + ["GET"] * 9)     # the access log agrees
    assert hub.token_server.requests - tokens == 1
    assert_complete_copy(ecr, "mastodon", "v4.5.2", pushed)
    mark = hub.mark()
    assert cli.main(argv) == 0
    warm = json.loads(capsys.readouterr().out)
    assert warm == {"digest": pushed.digest, "blobs_copied": 0, "blobs_skipped": 0, "bytes_copied": 0,
                    "source_requests": {"GET": 0, "HEAD": 2}}
    assert {m for m, _, _ in hub.requests_since(mark)} == {"HEAD"}


def test_standalone_warm_run_does_not_load_httpx(hub, ecr):
    """`python -m tootstack_dev.mirror` on a warm destination answers from the stdlib check alone."""
    import os
    import subprocess
    import sys

    push_image(hub, "mastodon/mastodon", "v4.5.2", [10_000])
    mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    env = dict(os.environ, TOOTSTACK_SRC_CREDS=hub.creds, TOOTSTACK_DEST_CREDS=ecr.creds)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tootstack_dev.mirror", "--plain-http", "--json",
                           f"{hub.host_port}/mastodon/mastodon:v4.5.2", f"{ecr.host_port}/mastodon"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["source_requests"] == {"GET": 0, "HEAD": 2}
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "tootstack.mirror.warmcheck" in imported and "httpx" not in imported


def test_warm_check_stands_aside_when_a_proxy_is_configured(hub, ecr, monkeypatch):
    """httpx honours HTTPS_PROXY and friends, http.client does not: the check leaves such setups to the copier."""
    from tootstack.mirror.warmcheck import warm_check

    push_image(hub, "mastodon/mastodon", "v4.5.2", [10_000])
    mirror(hub, "mastodon/mastodon:v4.5.2", ecr, "mastodon:v4.5.2")
    src, dst = parse_ref(f"{hub.host_port}/mastodon/mastodon:v4.5.2"), parse_ref(f"{ecr.host_port}/mastodon:v4.5.2")
    assert warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True).warm
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    mark = hub.mark()
    check = warm_check(src, dst, "v4.5.2", creds(hub), creds(ecr), plain_http=True)
    assert not check.warm and check.digest == "" and check.source_requests == {} and hub.requests_since(mark) == []

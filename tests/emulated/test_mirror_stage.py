"""The rehearsal's "mirror" stage against the same stand-ins the rehearsal starts."""

from types import SimpleNamespace

import pytest
from moto import mock_aws

from tootstack.errors import TootstackError
from tootstack_dev.local.faultproxy import FaultProxy
from tootstack_dev.rehearsal import mirror_stage
from tootstack_dev.rehearsal.stages import STAGE_MODULES


def test_stage_is_registered():
    assert "tootstack_dev.rehearsal.mirror_stage" in STAGE_MODULES and mirror_stage.NAME == "mirror"


def test_stage_mirrors_and_proves_a_warm_run(registry_token, registry_basic):
    ctx = SimpleNamespace(hub=registry_token, ecr=registry_basic, mirrored_images={}, region="us-east-1", stack_name="rehearsal")
    with mock_aws():
        detail = mirror_stage.run(ctx)
    assert "0 source GETs" in detail and "2 multi-arch images" in detail
    assert set(ctx.mirrored_images) == {"mastodon", "mastodon-streaming"}
    assert all("@sha256:" in ref for ref in ctx.mirrored_images.values())


def test_stage_fails_when_the_copy_is_corrupted(registry_token, registry_basic):
    with FaultProxy(registry_token) as proxy:
        proxy.add("GET", r"/blobs/sha256:", "corrupt", after=100, times=None)
        hub = SimpleNamespace(host_port=proxy.host_port, username=registry_token.username,
                              password=registry_token.password, client=registry_token.client,
                              mark=registry_token.mark, requests_since=registry_token.requests_since)
        with mock_aws(), pytest.raises(TootstackError):
            mirror_stage.run(SimpleNamespace(hub=hub, ecr=registry_basic, mirrored_images={}, region="us-east-1", stack_name="r"))

"""The stack defaults to the newest stable Mastodon release and meets its dependencies, and the rehearsal
upgrades to it (the upgrade itself, with real registries and moto, is tests/emulated/test_default_version.py).

Release evidence (checked 2026-12-04 with the project's search tools): the SourceForge mirror of
mastodon/mastodon's GitHub releases lists "Latest Version v4.7.4" (https://sourceforge.net/projects/mastodon.mirror/files/v4.7.4/,
published 2026-10-29 together with the 4.5 branch's v4.5.20); earlier 4.7 releases: mastodon/mastodon#40231
"Bump version to v4.7.0", mastodon/mastodon#40517 "Bump version to v4.7.2", mastodon/chart#248 "Update mastodon app to v4.7.2".
"""

import pytest

from tootstack.upgrade.version import parse_version, version_of_image
from tootstack_dev.local.template import load_template, project_root
from tootstack_dev.rehearsal import upgrade_stage
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.rehearsal.deploy import _samconfig_overrides

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
NEWEST = "v4.7.4"
PREVIOUS = "v4.5.2"


def _default(name):
    return TEMPLATE["Parameters"][name]["Default"]


def test_both_images_default_to_the_newest_stable_release():
    assert version_of_image(_default("MastodonImage")) == NEWEST
    assert version_of_image(_default("StreamingImage")) == NEWEST
    assert _default("MastodonImage").startswith("ghcr.io/mastodon/mastodon:")
    assert _default("StreamingImage").startswith("ghcr.io/mastodon/mastodon-streaming:")


def test_the_stack_meets_the_new_release_dependencies():
    """Mastodon 4.6+ release notes, "Dependencies": PostgreSQL 14 or newer, Redis 7.0 or newer (v4.6.5 notes as
    quoted in trueforge-org/containerforge#3085: "External dependencies have not changed since v4.6.0")."""
    db = TEMPLATE["Resources"]["Database"]["Properties"]
    assert db["Engine"] == "postgres" and int(str(db["EngineVersion"]).split(".")[0]) >= 14
    redis = TEMPLATE["Resources"]["Redis"]["Properties"]
    assert redis["Engine"] == "valkey" and parse_version(f"v{redis['EngineVersion']}.0") >= parse_version("v7.0.0")


def test_the_rehearsal_deploys_v4_5_2_and_upgrades_it_to_the_default():
    ctx = RehearsalContext(root=ROOT, stack_name="t", region="us-east-1", parameters={})
    overrides = _samconfig_overrides(ctx)
    assert version_of_image(overrides["MastodonImage"]) == PREVIOUS == version_of_image(overrides["StreamingImage"])
    assert upgrade_stage.upgrade_path(TEMPLATE, overrides) == (PREVIOUS, NEWEST)
    with pytest.raises(Exception, match="nothing to upgrade"):
        upgrade_stage.upgrade_path(TEMPLATE, {"MastodonImage": _default("MastodonImage")})

"""The upgrade from v4.5.2 to the stack's default release works (that the default is the newest stable
release, and the rehearsal's path to it, are checked in tests/unit/test_default_version_units.py).

Release evidence (checked 2026-12-04 with the project's search tools): the SourceForge mirror of
mastodon/mastodon's GitHub releases lists "Latest Version v4.7.4" (https://sourceforge.net/projects/mastodon.mirror/files/v4.7.4/,
published 2026-10-29 together with the 4.5 branch's v4.5.20); earlier 4.7 releases: mastodon/mastodon#40231
"Bump version to v4.7.0", mastodon/mastodon#40517 "Bump version to v4.7.2", mastodon/chart#248 "Update mastodon app to v4.7.2".
"""

import pytest

from tootstack_dev.local.images import push_image
from tootstack_dev.local.registry import Registry
from tootstack_dev.local.template import project_root

from tests.emulated.test_upgrade import SERVICES, VERSION, _images, _live, _setup

ROOT = project_root()
NEWEST = "v4.7.4"
PREVIOUS = "v4.5.2"


@pytest.fixture
def upgrade_to_newest(local_aws):
    with Registry(auth="none") as upstream, Registry(auth="basic") as ecr:
        for repo in ("mastodon/mastodon", "mastodon/mastodon-streaming"):
            push_image(upstream, repo, NEWEST, [4096], platforms=("linux/amd64", "linux/arm64"))
        local_aws.ecs_outcome = lambda service, td: "COMPLETED"
        yield _setup(local_aws, upstream, ecr)


def test_upgrade_from_v4_5_2_to_the_default_release(upgrade_to_newest):
    """The upgrade state machine (real handler, moto's engine) takes services running v4.5.2 to the default
    release across two minor versions: pre-deployment migrations, every service pinned, post-deployment."""
    import boto3

    aws, arn, ecs, _, ecr = upgrade_to_newest
    execution = aws.run_state_machine(arn, {"version": NEWEST})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.output["previous"] == PREVIOUS and execution.output["status"] == "upgraded"
    for name, service in _live(ecs).items():
        (image,) = _images(ecs, service["taskDefinition"])
        assert image.startswith(f"{ecr.host_port}/") and "@sha256:" in image, name
    assert set(_live(ecs)) == set(SERVICES)
    runs = aws.tasks.runs
    assert [r.environment.get("SKIP_POST_DEPLOYMENT_MIGRATIONS") for r in runs] == ["true", None]
    assert boto3.client("ssm", region_name="us-east-1").get_parameter(Name=VERSION)["Parameter"]["Value"] == NEWEST

"""The mirror Lambda's input validation and its wiring in the template (the handler and its sample event with
moto and real registries are in tests/emulated/test_mirror_lambda_handler.py)."""

import json

import pytest

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import load_template, project_root
from tootstack.mirror.service import parse_jobs

ROOT = project_root()
ECR_PASSWORD = "123456789012-auth-token"     # what moto's ecr:GetAuthorizationToken hands out
REPOS = {"mastodon": "tootstack-mastodon", "mastodon-streaming": "tootstack-streaming"}


@pytest.mark.parametrize("images, message", [
    ([], "non-empty list"),
    ("ghcr.io/mastodon/mastodon:v4.5.2", "non-empty list"),
    (["ghcr.io/someone/else:v1"], "not one of this stack's mirrors"),
    ([{"source": "ghcr.io/mastodon/mastodon:v1", "repo": "x"}], "unknown keys"),
    (["Not A Ref"], "invalid image reference"),
    ([42], "string or an object"),
])
def test_bad_input_is_rejected_before_anything_is_copied(images, message):
    with pytest.raises(InvalidInput, match=message):
        parse_jobs(images, REPOS)


def test_template_pins_task_definitions_and_schedules_the_mirror():
    sam = load_template(ROOT / "template.yaml")
    res = sam["Resources"]
    for repo in ("MastodonRepository", "StreamingRepository"):
        props = res[repo]["Properties"]
        assert props["ImageTagMutability"] == "IMMUTABLE" and props["ImageScanningConfiguration"]["ScanOnPush"] is True
        assert "imageCountMoreThan" in json.dumps(props["LifecyclePolicy"])
    assert res["MirrorSchedule"]["Type"] == "AWS::Scheduler::Schedule"
    schedule_input = res["MirrorSchedule"]["Properties"]["Target"]["Input"]["Fn::Sub"]
    assert json.loads(schedule_input.replace("${MastodonImage}", "a/b:c").replace("${StreamingImage}", "d/e:f"))["images"]
    assert {i["Repository"] for i in res["ImageMirror"]["Properties"]["Images"]} == set(REPOS)
    # every container the stack runs comes from the mirror, pinned by digest (never Docker Hub / ghcr.io)
    images = [c["Image"] for r in res.values() if r["Type"] == "AWS::ECS::TaskDefinition"
              for c in r["Properties"]["ContainerDefinitions"]]
    assert images and all(image in ({"Fn::GetAtt": ["ImageMirror", "MastodonImage"]},
                                    {"Fn::GetAtt": ["ImageMirror", "StreamingImage"]}) for image in images), images

"""The mirror Lambda's handler end to end: moto for Secrets Manager, SSM and ECR's API, real docker-registry
instances for Docker Hub (token auth) and ECR (basic auth). Input validation and the template's wiring are in
tests/unit/test_mirror_lambda.py."""

import json
from contextlib import ExitStack

import boto3
import pytest
from moto import mock_aws

from tests.unit.test_mirror_lambda import ECR_PASSWORD, REPOS, ROOT
from tootstack.errors import InvalidInput
from tootstack_dev.local.aws import LambdaContext
from tootstack_dev.local.images import push_image
from tootstack_dev.local.registry import Registry
from tootstack_dev.local.template import LocalFunction, load_template
from tootstack_dev.local.ecr import ecr_registry


def _Context():
    return LambdaContext("mirror")


@pytest.fixture
def ecr_standin():
    with Registry(auth="basic", username="AWS", password=ECR_PASSWORD) as registry:
        yield registry


@pytest.fixture
def handler(monkeypatch, registry_token, ecr_standin):
    """The handler with env as the template sets it; ghcr.io stands at the token registry."""
    with mock_aws(), ExitStack() as stack:
        monkeypatch.setenv("REPOSITORIES", json.dumps(REPOS))
        monkeypatch.setenv("PARAMETER_PREFIX", "/tootstack/images")
        monkeypatch.setenv("SOURCE_CREDENTIALS_SECRET_ARN", "")
        stack.enter_context(ecr_registry(ecr_standin))   # moto's ECR names the stand-in as the account's registry
        secret = boto3.client("secretsmanager").create_secret(
            Name="hub-creds", SecretString=json.dumps({"auths": {registry_token.host_port: {
                "username": registry_token.username, "password": registry_token.password}}}))
        monkeypatch.setenv("SOURCE_CREDENTIALS_SECRET_ARN", secret["ARN"])
        fn = LocalFunction("MirrorFunction", ROOT / "functions/mirror", "app.handler", {})
        yield lambda event: fn.entrypoint(event, _Context())


def _local_event(hub):
    """events/mirror.json with ghcr.io replaced by the local token registry."""
    text = (ROOT / "events/mirror.json").read_text().replace("ghcr.io", hub.host_port)
    return json.loads(text)


def test_sample_event_mirrors_both_images_and_records_digests(handler, registry_token, ecr_standin, capsys):
    tag = json.loads((ROOT / "events/mirror.json").read_text())["images"][0].rsplit(":", 1)[1]   # the sample's release
    pushed = {name: push_image(registry_token, f"mastodon/{name}", tag, [40_000]) for name in REPOS}
    out = handler(_local_event(registry_token))
    by_repo = {r["repository"]: r for r in out["images"]}
    assert set(by_repo) == set(REPOS.values())
    ssm = boto3.client("ssm")
    for key, repo in REPOS.items():
        result = by_repo[repo]
        assert result["digest"] == pushed[key].digest and not result["warm"]
        assert result["image"] == f"{ecr_standin.host_port}/{repo}@{pushed[key].digest}"
        assert ssm.get_parameter(Name=f"/tootstack/images/{key}")["Parameter"]["Value"] == result["image"]
    again = handler(_local_event(registry_token))
    assert all(r["warm"] and r["source_requests"]["GET"] == 0 for r in again["images"])
    logs = capsys.readouterr()
    assert registry_token.password not in logs.out + logs.err and ECR_PASSWORD not in logs.out + logs.err


def test_custom_resource_answers_cloudformation_with_pinned_images(handler, registry_token, ecr_standin, response_url):
    pushed = push_image(registry_token, "mastodon/mastodon", "v4.5.2", [10_000])
    push_image(registry_token, "mastodon/mastodon-streaming", "v4.5.2", [10_000])
    url, replies = response_url
    sam = load_template(ROOT / "template.yaml")
    images = sam["Resources"]["ImageMirror"]["Properties"]["Images"]
    sources = {"MastodonImage": f"{registry_token.host_port}/mastodon/mastodon:v4.5.2",
               "StreamingImage": f"{registry_token.host_port}/mastodon/mastodon-streaming:v4.5.2"}
    props = [{"Name": i["Name"], "Source": sources[i["Name"]], "Repository": i["Repository"]} for i in images]
    event = {"RequestType": "Create", "ResponseURL": url,
             "StackId": "stack", "RequestId": "r1", "LogicalResourceId": "ImageMirror",
             "ResourceType": "Custom::ImageMirror", "ResourceProperties": {"Images": props}}
    assert handler(event)["status"] == "SUCCESS"
    bad = dict(event, ResourceProperties={"Images": [{"Source": "x/y:z", "Repository": "not-ours"}]})
    assert handler(bad)["status"] == "FAILED"
    assert replies[0]["Status"] == "SUCCESS"
    assert replies[0]["Data"]["MastodonImage"] == f"{ecr_standin.host_port}/tootstack-mastodon@{pushed.digest}"
    assert "@sha256:" in replies[0]["Data"]["StreamingImage"]
    assert replies[1]["Status"] == "FAILED" and "not-ours" in replies[1]["Reason"]


def test_handler_requires_images(handler):
    with pytest.raises(InvalidInput, match='"images"'):
        handler({"detail": {}})

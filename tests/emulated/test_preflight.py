"""Preflight checks against ECS/Secrets Manager/SSM/SES in moto, through the real handler and event file."""

import json

import boto3
import pytest
from moto import mock_aws

from tootstack_dev.local.template import LocalFunction, project_root
from tootstack_dev.local.aws import LambdaContext

ROOT = project_root()


def _Context():
    return LambdaContext("preflight")




@pytest.fixture
def preflight(monkeypatch):
    with mock_aws():
        monkeypatch.setenv("CLUSTER_NAME", "mastodon")
        monkeypatch.setenv("SES_IDENTITY", "social.example")
        fn = LocalFunction("Preflight", ROOT / "functions/preflight", "app.handler", {})
        event = json.loads((ROOT / "events/preflight.json").read_text())
        yield lambda: fn.entrypoint(event, _Context())


def _service(secret_refs, image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mastodon@sha256:" + "a" * 64):
    ecs = boto3.client("ecs", region_name="us-east-1")
    ecs.create_cluster(clusterName="mastodon")
    td = ecs.register_task_definition(
        family="web",
        containerDefinitions=[{"name": "web", "image": image, "memory": 512,
                               "secrets": [{"name": f"S{i}", "valueFrom": ref} for i, ref in enumerate(secret_refs)]}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="mastodon", serviceName="web", taskDefinition=td, desiredCount=0)


def _checks(result):
    return {c["name"]: c for c in result["checks"]}


def test_all_references_present_and_email_verified(preflight):
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="mastodon/otp", SecretString="v")["ARN"]
    boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/mastodon/key", Value="v", Type="SecureString")
    boto3.client("sesv2", region_name="us-east-1").create_email_identity(EmailIdentity="social.example")
    _service([arn, f"{arn}:password::", "arn:aws:ssm:us-east-1:123456789012:parameter/mastodon/key"])
    result = preflight()
    checks = _checks(result)
    assert result["ok"] is True
    assert checks["secrets"]["status"] == "ok" and "all 3" in checks["secrets"]["detail"]
    assert checks["images"]["status"] == "ok"
    assert checks["services"]["detail"] == "running/desired: web 0/0"


def test_missing_secret_fails_and_names_it(preflight):
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    _service([missing], image="docker.io/tootsuite/mastodon:v4.5.2")
    result = preflight()
    checks = _checks(result)
    assert result["ok"] is False
    assert checks["secrets"]["status"] == "fail" and missing in checks["secrets"]["detail"]
    assert checks["images"]["status"] == "warn" and "docker.io/tootsuite/mastodon" in checks["images"]["detail"]
    assert checks["email"]["status"] == "fail"


def test_empty_cluster_fails(preflight):
    boto3.client("ecs", region_name="us-east-1").create_cluster(clusterName="mastodon")
    result = preflight()
    assert result["ok"] is False
    assert _checks(result)["services"]["detail"] == "no ECS services in cluster mastodon"

"""template.yaml deploys into moto's CloudFormation (what the rehearsal's deploy stage does), per profile."""

import json

import boto3
import pytest
from moto import mock_aws

from tootstack_dev.local.template import load_template, project_root
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.rehearsal.deploy import create_stack
from tootstack_dev.rehearsal.standins import StandIn, substitute

ROOT = project_root()
REGION = "us-east-1"
DOMAIN = "social.rehearsal.test"


def deploy(parameters):
    """The rehearsal's own stack creation (tootstack_dev.rehearsal.deploy.create_stack) with `parameters` over the
    rehearsal's samconfig values; no Redis stand-in."""
    ctx = RehearsalContext(root=ROOT, stack_name="tootstack", region=REGION, parameters=dict(parameters), progress=lambda line: None)
    ctx.sam_template = load_template(ROOT / "template.yaml")
    stack, _, _ = create_stack(ctx)
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in
                 boto3.client("cloudformation", region_name=REGION).list_stack_resources(StackName="tootstack")["StackResourceSummaries"]}
    return stack, resources, ctx.skipped


@pytest.mark.parametrize("parameters", [{}, {"Profile": "micro", "UseCloudFront": "false"}, {"ServicesLaunched": "true"}],
                         ids=["standard", "micro-no-cloudfront", "legacy-launched-flag-ignored"])
def test_template_deploys_into_moto(parameters):
    with mock_aws():
        stack, resources, skipped = deploy(parameters)
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        stood_in = {s["type"] for s in skipped}
        assert {"AWS::ElastiCache::ReplicationGroup", "AWS::SecretsManager::Secret", "AWS::CertificateManager::Certificate"} <= stood_in
        ecs = boto3.client("ecs", region_name=REGION)
        cluster = resources["Cluster"]
        services = ecs.describe_services(cluster=cluster, services=ecs.list_services(cluster=cluster)["serviceArns"])["services"]
        counts = {s["serviceName"]: s["desiredCount"] for s in services}
        # (+ the Spot fallback's on-demand twin, standard once launched; it idles at 0)
        assert set(counts) - {"sidekiq-pull-ondemand"} == {"core", "web", "sidekiq-default", "sidekiq-pull"}
        assert counts.get("sidekiq-pull-ondemand", 0) == 0
        # Nothing starts before first boot, whatever a samconfig.toml from before says: ServicesLaunched is
        # ignored (ServiceCounts answers 0 for services that do not exist yet).
        assert set(counts.values()) == {0}
        # every injected secret is a real (moto) secret, referenced by ARN and JSON key
        secretsmanager = boto3.client("secretsmanager", region_name=REGION)
        web = ecs.describe_task_definition(taskDefinition="tootstack-web")["taskDefinition"]
        for secret in web["containerDefinitions"][0]["secrets"]:
            arn, key = secret["valueFrom"].rsplit(":", 3)[0], secret["valueFrom"].rsplit(":", 3)[1]
            assert key and secretsmanager.describe_secret(SecretId=arn)["ARN"] == arn
        database = json.loads(secretsmanager.get_secret_value(SecretId=next(
            s["ref"] for s in skipped if s["logical_id"] == "DatabaseSecret"))["SecretString"])
        assert database["username"] == "mastodon" and len(database["password"]) == 40
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        assert outputs["Url"] == f"https://{DOMAIN}/"
        assert all(database["password"] not in value for value in outputs.values())


def test_factories_may_take_the_resource():
    seen = {}

    def with_resource(logical_id, resource):
        seen[logical_id] = resource["Properties"]
        return StandIn("x", "ref-x")

    template = {"Resources": {"A": {"Type": "AWS::SecretsManager::Secret", "Properties": {"Name": "n"}},
                              "B": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "A"}}}}}
    result, skipped = substitute(template, {"AWS::SecretsManager::Secret": with_resource})
    assert seen == {"A": {"Name": "n"}}
    assert result["Resources"]["B"]["Properties"]["QueueName"] == "ref-x"
    assert skipped == [{"logical_id": "A", "type": "AWS::SecretsManager::Secret", "stand_in": "x", "ref": "ref-x"}]


def test_preflight_sees_the_deployed_services_and_secrets():
    from tootstack.preflight import run_preflight

    with mock_aws():
        _, resources, _ = deploy({})
        result = run_preflight(resources["Cluster"], DOMAIN, region=REGION)
        checks = {c["name"]: c for c in result["checks"]}
        assert checks["services"]["status"] == "ok" and "core 0/0" in checks["services"]["detail"]
        assert checks["secrets"]["status"] == "ok", checks["secrets"]["detail"]
        assert checks["images"]["status"] == "warn"  # ghcr.io until the mirror pins ECR digests
        assert checks["email"]["status"] in ("warn", "fail")  # moto's CloudFormation has no SES identity

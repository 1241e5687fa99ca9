"""Lifecycle seams: the workflows an operator runs one after another (deploy, first boot, create admin,
upgrade, sam deploy, one-off, rotation, maintenance) keep the site serving and the version moving forward.
Each test here failed on the code before the seam was closed."""

import json

import boto3
import pytest

from tootstack.local.aws import TaskResult
from tootstack.local.template import load_template, project_root

from tests.test_upgrade import OUTCOMES, STACK, _setup, registries  # noqa: F401 - registries is a fixture

ROOT = project_root()
TASK_DEFINITION_TYPES = ("AWS::ECS::TaskDefinition",)


# --- one-off, admin and first-boot tasks run the version the services run ---------------------------
def test_no_state_machine_pins_a_task_definition_revision():
    """RunTask with a family name starts that family's latest ACTIVE revision
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_RunTask.html, taskDefinition: "The family
    and revision (family:revision) or full ARN of the task definition to run. If a revision isn't specified,
    the latest ACTIVE revision is used."). A `!Ref <TaskDefinition>` substitution pins the revision
    CloudFormation created, which an upgrade leaves behind."""
    template = load_template(ROOT / "template.yaml")
    resources = template["Resources"]
    pinned = []
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::StateMachine":
            continue
        for name, value in (resource["Properties"].get("DefinitionSubstitutions") or {}).items():
            ref = value.get("Ref") if isinstance(value, dict) else None
            if ref in resources and resources[ref]["Type"] in TASK_DEFINITION_TYPES:
                pinned.append(f"{logical_id}.{name} = !Ref {ref}")
    assert pinned == []


def test_oneoff_runs_the_latest_revision_of_the_toolbox_family(oneoff_stack):
    """After an upgrade registered a new toolbox revision, a one-off task runs it, not the revision the
    stack created."""
    ecs = boto3.client("ecs", region_name="us-east-1")
    latest = ecs.describe_task_definition(taskDefinition=oneoff_stack.toolbox_family)["taskDefinition"]
    keys = ("family", "networkMode", "requiresCompatibilities", "cpu", "memory", "containerDefinitions", "executionRoleArn")
    upgraded = ecs.register_task_definition(**{k: latest[k] for k in keys if k in latest})["taskDefinition"]["taskDefinitionArn"]
    oneoff_stack.aws.tasks.on(oneoff_stack.toolbox_family, TaskResult(0, ["20240101000000 up"]))
    execution = oneoff_stack.aws.run_state_machine(oneoff_stack.oneoff_sm, {"command": ["rails", "db:migrate:status"]})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert [r.task_definition_arn for r in oneoff_stack.aws.tasks.runs] == [upgraded]


@pytest.fixture
def upgrade_with_admin(local_aws, registries):
    OUTCOMES.clear()
    local_aws.ecs_outcome = lambda service, td: OUTCOMES.get(service, "COMPLETED")
    aws, arn, ecs, toolbox, ecr = _setup(local_aws, *registries, env_overrides={"TASK_FAMILIES": f"{STACK}-admin"})
    admin = ecs.register_task_definition(
        family=f"{STACK}-admin", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512", memory="1024",
        containerDefinitions=[{"name": "admin", "image": "ghcr.io/mastodon/mastodon:v4.5.2", "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    return aws, arn, ecs, {"toolbox": toolbox, "admin": admin}, ecr


def _latest(ecs, family):
    td = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    return td["taskDefinitionArn"], [c["image"] for c in td["containerDefinitions"]]


def test_upgrade_repins_the_toolbox_and_admin_families(upgrade_with_admin):
    aws, arn, ecs, created, ecr = upgrade_with_admin
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    for role in ("toolbox", "admin"):
        latest, images = _latest(ecs, f"{STACK}-{role}")
        assert latest != created[role]
        assert images[0].startswith(f"{ecr.host_port}/mastodon@sha256:"), role


def test_a_rolled_back_upgrade_leaves_the_families_on_the_running_version(upgrade_with_admin):
    aws, arn, ecs, created, _ = upgrade_with_admin
    OUTCOMES["streaming"] = "FAILED"
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "UpgradeRolledBack"
    for role in ("toolbox", "admin"):
        assert _latest(ecs, f"{STACK}-{role}") == (created[role], ["ghcr.io/mastodon/mastodon:v4.5.2"])

"""Scheduled maintenance: the state machine in moto's engine (LocalAws), the real gate handler, simulated tasks."""

import json

import boto3
import pytest

from tootstack.crashloop import HALT_TAG
from tootstack.errors import InvalidInput
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.maintenance import Settings, build_plan

from tests.fixtures.ecs import cluster_with_network

ROOT = project_root()
STACK = "mstack"
LOCK = f"/{STACK}/upgrade/lock"
SERVICES = ["web", "streaming", "sidekiq-default"]


@pytest.fixture
def maintenance(local_aws):
    ecs, network = cluster_with_network(STACK)
    toolbox = ecs.register_task_definition(
        family=f"{STACK}-toolbox", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024", memory="2048",
        containerDefinitions=[{"name": "toolbox", "image": "ghcr.io/mastodon/mastodon:v4.5.2", "essential": True,
                               "command": ["bin/tootctl", "--help"]}],
    )["taskDefinition"]["taskDefinitionArn"]
    for name in SERVICES:
        ecs.create_service(cluster=STACK, serviceName=name, taskDefinition=toolbox, desiredCount=1)
    env = {"CLUSTER_NAME": STACK, "SERVICE_NAMES": ",".join(SERVICES), "UPGRADE_LOCK_PARAMETER": LOCK,
           "MAINTENANCE_MEDIA_DAYS": "7", "MAINTENANCE_PREVIEW_CARDS_DAYS": "180", "MAINTENANCE_PRUNE_ACCOUNTS": "false",
           "STACK_NAME": STACK}
    fn = LocalFunction("MaintenanceGateFunction", ROOT / "functions/maintenance_gate", "app.handler", {})
    gate_arn = local_aws.create_function("maintenance-gate", fn, env)
    arn = local_aws.create_state_machine_from_file(
        ROOT / "statemachines/maintenance.asl.json", "maintenance",
        {"MaintenanceGateFunctionArn": gate_arn, "ToolboxTaskFamily": f"{STACK}-toolbox", **network},
    )
    local_aws.tasks.on(f"{STACK}-toolbox", TaskResult(0, ["Removed 3 media attachments"]))
    return local_aws, arn


def _commands(aws):
    return [run.command for run in aws.tasks.runs]


def test_scheduled_run_uses_stack_defaults(maintenance):
    aws, arn = maintenance
    execution = aws.run_state_machine(arn, {})
    assert execution.status == "SUCCEEDED", execution.cause
    assert _commands(aws) == [
        ["bin/tootctl", "media", "remove", "--days", "7"],
        ["bin/tootctl", "preview_cards", "remove", "--days", "180"],
    ]
    assert execution.output["status"] == "done"
    assert [s["name"] for s in execution.output["steps"]] == ["media-remove", "preview-cards-remove"]
    assert all(run.container_name == "toolbox" for run in aws.tasks.runs)


def test_console_input_overrides_and_prunes(maintenance):
    aws, arn = maintenance
    execution = aws.run_state_machine(arn, {"media_days": 3, "preview_cards_days": 14, "prune_accounts": True})
    assert execution.status == "SUCCEEDED", execution.cause
    assert _commands(aws) == [
        ["bin/tootctl", "media", "remove", "--days", "3"],
        ["bin/tootctl", "preview_cards", "remove", "--days", "14"],
        ["bin/tootctl", "accounts", "prune"],
    ]


@pytest.mark.parametrize("bad", [{"preview_cards_days": 13}, {"media_days": "7; rm -rf /"}, {"statuses": 1}])
def test_bad_input_fails_clearly_and_runs_nothing(maintenance, bad):
    aws, arn = maintenance
    execution = aws.run_state_machine(arn, bad)
    assert execution.status == "FAILED"
    assert execution.error == "InvalidInput"
    assert aws.tasks.runs == []


def test_skipped_while_a_service_is_halted(maintenance):
    aws, arn = maintenance
    ecs = boto3.client("ecs", region_name="us-east-1")
    service = ecs.describe_services(cluster=STACK, services=["streaming"])["services"][0]["serviceArn"]
    ecs.tag_resource(resourceArn=service, tags=[{"key": HALT_TAG, "value": "scale_to_zero"}])
    execution = aws.run_state_machine(arn, {})
    assert execution.status == "SUCCEEDED"
    assert execution.output["status"] == "skipped"
    assert "streaming" in execution.output["reason"] and "halted" in execution.output["reason"]
    assert aws.tasks.runs == []


def test_skipped_while_an_upgrade_holds_the_lock(maintenance):
    aws, arn = maintenance
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name=LOCK, Type="String", Value=json.dumps({"version": "v4.5.3", "execution": "upgrade-1"}))
    execution = aws.run_state_machine(arn, {})
    assert execution.output["status"] == "skipped" and "v4.5.3" in execution.output["reason"]
    assert aws.tasks.runs == []
    ssm.put_parameter(Name=LOCK, Type="String", Value="none", Overwrite=True)  # released
    assert aws.run_state_machine(arn, {}).output["status"] == "done"
    assert len(aws.tasks.runs) == 2


def test_failed_step_fails_the_run_and_stops(maintenance):
    aws, arn = maintenance
    aws.tasks.on(f"{STACK}-toolbox", lambda run: TaskResult(1 if "media" in run.command else 0, ["boom"]))
    execution = aws.run_state_machine(arn, {})
    assert execution.status == "FAILED"
    assert execution.error == "MaintenanceStepFailed"
    assert _commands(aws) == [["bin/tootctl", "media", "remove", "--days", "7"]]


def test_task_that_never_starts_fails_the_run(maintenance):
    aws, arn = maintenance
    aws.tasks.on(f"{STACK}-toolbox", TaskResult.failed_to_start("CannotPullContainerError"))
    execution = aws.run_state_machine(arn, {})
    assert execution.status == "FAILED" and execution.error == "MaintenanceStepFailed"


def test_plan_bounds_and_defaults():
    defaults = Settings()
    assert build_plan(None, defaults)[1]["command"][-1] == "180"
    assert build_plan({"preview_cards_days": "14"}, defaults)[1]["command"][-1] == "14"
    with pytest.raises(InvalidInput, match="minimum of 14"):
        build_plan({"preview_cards_days": 13}, defaults)
    with pytest.raises(InvalidInput, match="above 3650"):
        build_plan({"media_days": 99999}, defaults)
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        build_plan(["media"], defaults)
    with pytest.raises(InvalidInput, match="minimum of 1 days"):
        build_plan({"media_days": 0}, defaults)
    with pytest.raises(InvalidInput, match="true or false"):
        build_plan({"prune_accounts": "yes"}, defaults)
    with pytest.raises(InvalidInput, match="stack parameter preview_cards_days=7"):
        Settings.from_env({"MAINTENANCE_PREVIEW_CARDS_DAYS": "7"})


def test_sample_event_is_valid():
    event = json.loads((ROOT / "events/maintenance_gate.json").read_text())
    assert len(build_plan(event["input"], Settings())) == 2

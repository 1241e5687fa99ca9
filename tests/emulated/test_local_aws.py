"""The LocalAws harness: Lambda routing, state machine execution, ECS RunTask simulation."""

import os
import json
from pathlib import Path

import pytest

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult

DEFINITION = Path(__file__).parents[1] / "data" / "harness_runtask.asl.json"


def _network(local_aws):
    ec2 = local_aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    return {"Subnet": subnet, "SecurityGroup": group}


def _toolbox(local_aws, secret_value="s3cr3t-value-never-logged"):
    ecs = local_aws.client("ecs")
    ecs.create_cluster(clusterName="mastodon")
    arn = local_aws.client("secretsmanager").create_secret(
        Name="app-secrets", SecretString=json.dumps({"SECRET_KEY_BASE": secret_value})
    )["ARN"]
    local_aws.client("ssm").put_parameter(Name="/tootstack/db-host", Value="db.internal", Type="String")
    ecs.register_task_definition(
        family="mastodon-toolbox",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{
            "name": "toolbox",
            "image": "ghcr.io/mastodon/mastodon:v4.5.2",
            "essential": True,
            "command": ["bash"],
            "environment": [{"name": "LOCAL_DOMAIN", "value": "social.example"}],
            "secrets": [
                {"name": "SECRET_KEY_BASE", "valueFrom": f"{arn}:SECRET_KEY_BASE::"},
                {"name": "DB_HOST", "valueFrom": "/tootstack/db-host"},
            ],
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/mastodon/toolbox", "awslogs-stream-prefix": "ecs", "awslogs-region": "us-east-1"}},
        }],
    )


def _machine(local_aws, commands):
    local_aws.create_function("prepare", lambda event, context: {"command": commands[event["job"]]})
    return local_aws.create_state_machine_from_file(
        DEFINITION, "runtask", {"PrepareFunction": "prepare", "Cluster": "mastodon", "TaskDefinition": "mastodon-toolbox", **_network(local_aws)}
    )


def test_runtask_sync_gets_exit_code_command_and_secrets(local_aws):
    _toolbox(local_aws)
    seen = []

    def behave(run):
        seen.append(run)
        return TaskResult(exit_code=0, log_lines=["Done: 3 files"])

    local_aws.tasks.on("mastodon-toolbox", behave)
    arn = _machine(local_aws, {"usage": ["tootctl", "media", "usage"]})
    execution = local_aws.run_state_machine(arn, {"job": "usage"})
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["task"] == {"exit_code": 0, "stop_code": "EssentialContainerExited"}
    (run,) = seen
    assert run.command == ["tootctl", "media", "usage"]
    assert run.environment == {"LOCAL_DOMAIN": "social.example"}
    assert run.secrets == {"SECRET_KEY_BASE": "s3cr3t-value-never-logged", "DB_HOST": "db.internal"}
    assert local_aws.tasks.log_events[0][0] == "/mastodon/toolbox"
    events = local_aws.client("logs").filter_log_events(logGroupName="/mastodon/toolbox")["events"]
    assert [e["message"] for e in events] == ["Done: 3 files"]
    assert "s3cr3t-value-never-logged" not in execution.raw


def test_nonzero_exit_fails_the_execution(local_aws):
    _toolbox(local_aws)
    local_aws.tasks.on("mastodon-toolbox", TaskResult(exit_code=1, log_lines=["boom"]))
    execution = local_aws.run_state_machine(_machine(local_aws, {"x": ["tootctl", "x"]}), {"job": "x"})
    assert execution.status == "FAILED"
    assert execution.error == "TaskFailed"


def test_missing_secret_means_task_failed_to_start(local_aws):
    _toolbox(local_aws)
    local_aws.client("ssm").delete_parameter(Name="/tootstack/db-host")
    arn = _machine(local_aws, {"x": ["tootctl", "x"]})
    execution = local_aws.run_state_machine(arn, {"job": "x"})
    assert execution.status == "FAILED"  # no exit code: the ResultSelector path is missing
    assert local_aws.tasks.runs[0].result.stop_code == "TaskFailedToStart"


def test_handler_error_fails_the_lambda_task(local_aws):
    def broken(event, context):
        raise ValueError("bad input: job missing")

    local_aws.create_function("prepare", broken)
    _toolbox(local_aws)
    arn = local_aws.create_state_machine_from_file(
        DEFINITION, "runtask", {"PrepareFunction": "prepare", "Cluster": "mastodon", "TaskDefinition": "mastodon-toolbox", **_network(local_aws)}
    )
    execution = local_aws.run_state_machine(arn, {})
    assert execution.status == "FAILED"
    assert "bad input: job missing" in (execution.cause or "")
    assert local_aws.tasks.runs == []


def test_routed_function_sees_its_environment_only_during_the_call(local_aws, monkeypatch):
    import os

    monkeypatch.delenv("TABLE_NAME", raising=False)
    local_aws.create_function("env", lambda event, context: {"table": os.environ.get("TABLE_NAME"), "fn": context.function_name}, {"TABLE_NAME": "t1"})
    assert local_aws.invoke("env", {}) == {"table": "t1", "fn": "env"}
    assert "TABLE_NAME" not in os.environ
    local_aws.create_function("bad", lambda e, c: 1 / 0)
    with pytest.raises(TootstackError, match="ZeroDivisionError"):
        local_aws.invoke("bad", {})


def test_update_service_integration_changes_the_moto_service(local_aws):
    """aws-sdk:ecs:updateService and aws-sdk:ecs:describeServices work unchanged."""
    _toolbox(local_aws)
    ecs = local_aws.client("ecs")
    ecs.create_service(cluster="mastodon", serviceName="web", taskDefinition="mastodon-toolbox", desiredCount=0, launchType="FARGATE")
    definition = {
        "StartAt": "Scale",
        "States": {
            "Scale": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:updateService",
                "Parameters": {"Cluster": "mastodon", "Service": "web", "DesiredCount.$": "$.count"},
                "ResultPath": None,
                "Next": "Describe",
            },
            "Describe": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:ecs:describeServices",
                "Parameters": {"Cluster": "mastodon", "Services": ["web"]},
                "ResultSelector": {"desired.$": "$.Services[0].DesiredCount"},
                "End": True,
            },
        },
    }
    execution = local_aws.run_state_machine(local_aws.create_state_machine("scale", definition), {"count": 2})
    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output == {"desired": 2}
    assert ecs.describe_services(cluster="mastodon", services=["web"])["services"][0]["desiredCount"] == 2


def test_task_behaviour_for_a_block_puts_the_previous_one_back(local_aws):
    tasks = local_aws.tasks
    outer, inner = TaskResult(exit_code=3), TaskResult(exit_code=4)
    with tasks.behaving("fam", inner):                      # none before: none after
        assert tasks._behaviors.get("fam") is inner
    assert tasks._behaviors.get("fam") is None
    tasks.on("fam", outer)
    with pytest.raises(RuntimeError):
        with tasks.behaving("fam", inner):
            raise RuntimeError("stage failed")
    assert tasks._behaviors.get("fam") is outer       # restored even when the block fails


def test_update_route_merges_environment_and_keeps_the_handler(local_aws):
    seen = []
    local_aws.create_function("fn", lambda event, context: seen.append(dict(os.environ)) or {"ok": True}, {"A": "1", "B": "2"})
    local_aws.update_route("fn", {"B": "3"})
    local_aws.invoke("fn", {})
    assert seen[-1]["A"] == "1" and seen[-1]["B"] == "3"
    with pytest.raises(TootstackError, match="not routed"):
        local_aws.update_route("nope", {})


def test_wait_states_of_an_emulated_state_machine_pass_in_emulated_time(local_aws):
    """emulate_time: the Wait state's seconds are recorded, not slept (the upgrade's guard polls every 30 s);
    a state machine not given to it still waits (moto's own Wait), which the timeout shows."""
    import time

    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "Next": "P"},
                                             "P": {"Type": "Pass", "End": True}}}
    emulated = local_aws.create_state_machine("emulated", definition)
    local_aws.emulate_time(emulated)
    started = time.monotonic()
    assert local_aws.run_state_machine(emulated, {}, timeout=30).status == "SUCCEEDED"
    assert time.monotonic() - started < 30 and local_aws.waited == [3600]
    waiting = local_aws.create_state_machine("waiting", definition)
    with pytest.raises(TootstackError, match="still RUNNING"):
        local_aws.run_state_machine(waiting, {}, timeout=1)
    assert local_aws.waited == [3600]
    sfn = local_aws.client("stepfunctions")
    for execution in sfn.list_executions(stateMachineArn=waiting)["executions"]:
        sfn.stop_execution(executionArn=execution["executionArn"])


def test_moto_ecr_names_the_local_registry_only_while_asked():
    """moto 5.2's GetAuthorizationToken answers https://<account>.dkr.ecr.<region>.amazonaws.com with
    AWS:<account>-auth-token (moto/ecr/responses.py); inside ecr_registry() it names the local registry."""
    import base64
    from types import SimpleNamespace

    import boto3
    from moto import mock_aws

    from tootstack_dev.local.ecr import ecr_registry

    registry = SimpleNamespace(url="http://127.0.0.1:5000", username="ecr-user", password="pw")
    with mock_aws():
        ecr = boto3.client("ecr", region_name="us-east-1")
        with ecr_registry(registry):
            data = ecr.get_authorization_token()["authorizationData"][0]
            assert data["proxyEndpoint"] == "http://127.0.0.1:5000"
            assert base64.b64decode(data["authorizationToken"]).decode() == "ecr-user:pw"
        data = ecr.get_authorization_token()["authorizationData"][0]
        assert data["proxyEndpoint"] == "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"

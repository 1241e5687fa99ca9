"""The Spot fallback controller against moto (ECS, CloudWatch, SSM) through the real handler; the decision
logic's own tests are in tests/unit/test_spot_fallback.py."""

import json
from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws
from tootstack.crashloop import HALT_TAG
from tootstack_dev.local.aws import LambdaContext
from tootstack_dev.local.template import LocalFunction, project_root

ROOT = project_root()


def _Context():
    return LambdaContext("spot-fallback")


@pytest.fixture
def controller(monkeypatch):
    with mock_aws():
        ecs = boto3.client("ecs", region_name="us-east-1")
        ecs.create_cluster(clusterName="c")
        td = ecs.register_task_definition(family="sidekiq", containerDefinitions=[{"name": "s", "image": "x", "memory": 512}])
        arn = td["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster="c", serviceName="pull-spot", taskDefinition=arn, desiredCount=1)
        ecs.create_service(cluster="c", serviceName="pull-ondemand", taskDefinition=arn, desiredCount=0)
        for key, value in {"CLUSTER_NAME": "c", "SPOT_SERVICE": "pull-spot", "ON_DEMAND_SERVICE": "pull-ondemand",
                           "METRIC_SERVICE": "pull", "FALLBACK_STATE_PARAMETER": "/s/spot-fallback", "STACK_NAME": "s"}.items():
            monkeypatch.setenv(key, value)
        fn = LocalFunction("SpotFallbackFunction", ROOT / "functions/spot_fallback", "app.handler", {})
        event = json.loads((ROOT / "events/spot_fallback.json").read_text())
        yield ecs, (lambda: fn.entrypoint(event, _Context()))


def _latency(value):
    boto3.client("cloudwatch", region_name="us-east-1").put_metric_data(Namespace="tootstack", MetricData=[{
        "MetricName": "SidekiqQueueLatency", "Value": value, "Unit": "Seconds", "Timestamp": datetime.now(timezone.utc),
        "Dimensions": [{"Name": "StackName", "Value": "s"}, {"Name": "Service", "Value": "pull"}]}])


def _spot_running(count):
    """moto reports running == desired; Spot capacity shortage is set on its model directly."""
    from moto.ecs.models import ecs_backends

    ecs_backends["123456789012"]["us-east-1"].services["c:pull-spot"].running_count = count


def _desired(ecs, name):
    return ecs.describe_services(cluster="c", services=[name])["services"][0]["desiredCount"]


def test_controller_takes_over_when_spot_runs_nothing_and_latency_is_high(controller):
    ecs, invoke = controller
    _spot_running(0)   # Spot cannot place: desired 1, running 0
    _latency(300)
    result = invoke()
    assert result["action"] == "take_over" and result["mode"] == "on_demand"
    assert _desired(ecs, "pull-ondemand") == result["on_demand_desired"] >= 1
    state = json.loads(boto3.client("ssm", region_name="us-east-1").get_parameter(Name="/s/spot-fallback")["Parameter"]["Value"])
    assert state["mode"] == "on_demand"
    assert invoke()["action"] == "hold"          # idempotent on the next tick


def test_controller_leaves_halted_services_alone(controller):
    ecs, invoke = controller
    ecs.update_service(cluster="c", service="pull-spot", desiredCount=5)
    arn = ecs.describe_services(cluster="c", services=["pull-spot"])["services"][0]["serviceArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": HALT_TAG, "value": "x"}])
    _latency(300)
    assert invoke()["action"] == "none"
    assert _desired(ecs, "pull-ondemand") == 0


def test_controller_without_metric_does_nothing(controller):
    ecs, invoke = controller
    assert invoke()["action"] == "none" and _desired(ecs, "pull-ondemand") == 0

"""The core-stop rule's event pattern matched by moto's EventBridge pattern engine (an implementation of
EventBridge patterns we did not write) against recorded-shape ECS events. The other safety-net checks, on
the parsed template, are in tests/unit/test_safety_net.py."""

import copy
import json

import pytest
from moto.events.models import EventPattern

from tests.unit.test_safety_net import EVENTS, TOPIC, resources
from tootstack_dev.cost.template_eval import ResourceRef


CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/tootstack"


def _rule():
    props = resources()["CoreTaskStoppedRule"]["Properties"]
    pattern = json.loads(json.dumps(props["EventPattern"],
                                    default=lambda ref: CLUSTER_ARN if ref == ResourceRef("Cluster", "Arn") else str(ref)))
    return props, EventPattern.load(json.dumps(pattern))


def _core_event(name, group="service:core"):
    event = copy.deepcopy(json.loads((EVENTS / name).read_text()))
    event["detail"]["group"] = group
    event["detail"]["clusterArn"] = CLUSTER_ARN
    return event


@pytest.mark.parametrize("name", [
    "task_exit_nonzero.json", "task_exit_zero.json", "task_oom.json", "task_elb_health_check.json",
    "task_container_health_check.json", "task_image_pull.json", "task_secrets.json", "task_termination_notice.json",
])
def test_every_unplanned_core_stop_reaches_the_operator(name):
    """ECS task state change events (shapes: tests/data/ecs_events, as documented in
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_task_events.html), matched by moto's
    EventBridge pattern engine (moto/events/models.py EventPattern)."""
    props, pattern = _rule()
    assert pattern.matches_event(_core_event(name))
    assert props["Targets"][0]["Arn"] == TOPIC


@pytest.mark.parametrize(("name", "group"), [
    ("task_deployment_replacement.json", "service:core"),   # a deployment replaces the task: planned
    ("task_scale_in.json", "service:core"),
    ("task_user_initiated.json", "service:core"),           # stopped by hand
    ("task_exit_nonzero.json", "service:web"),              # burst web tasks: the crashloop detector's business
    ("task_oneoff_exit_nonzero.json", "family:tootstack-toolbox"),
])
def test_planned_stops_and_other_services_stay_quiet(name, group):
    _, pattern = _rule()
    assert not pattern.matches_event(_core_event(name, group))
    other_cluster = _core_event("task_oom.json")
    other_cluster["detail"]["clusterArn"] = CLUSTER_ARN + "-other"
    assert not pattern.matches_event(other_cluster)


def test_core_stop_message_names_the_reason_and_the_task_without_secrets():
    transformer = _rule()[0]["Targets"][0]["InputTransformer"]
    assert set(transformer["InputPathsMap"].values()) >= {"$.detail.stopCode", "$.detail.stoppedReason", "$.detail.taskArn"}
    for key in transformer["InputPathsMap"]:
        assert f"<{key}>" in transformer["InputTemplate"]
    json.loads(transformer["InputTemplate"].replace("<", "").replace(">", ""))   # a JSON string, as SNS expects

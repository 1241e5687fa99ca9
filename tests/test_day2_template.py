"""template.yaml's day-2 operations section, evaluated per profile with the cost model's evaluator."""

import json

import pytest

from tootstack.cost.model import estimate
from tootstack.cost.template_eval import TemplateEvaluator
from tootstack.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")


def resources(**params):
    return TemplateEvaluator(TEMPLATE, {k: str(v) for k, v in params.items()}).resources()


def test_scheduler_service_is_never_scaled():
    for profile in ("micro", "standard"):
        found = resources(Profile=profile, ServicesLaunched="true")
        targets = [r["Properties"]["ResourceId"] for r in found.values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"]
        assert targets, profile
        assert not any("SidekiqSchedulerService" in json.dumps(t, default=str) for t in targets)


def test_scaling_waits_for_first_boot_and_micro_scales_only_web():
    assert not [k for k, r in resources(ServicesLaunched="false").items() if r["Type"].startswith("AWS::ApplicationAutoScaling")]
    micro = resources(Profile="micro", ServicesLaunched="true")
    assert "WebScalableTarget" in micro and "SidekiqDefaultScalableTarget" not in micro and "QueueLatencyFunction" not in micro
    standard = resources(Profile="standard", ServicesLaunched="true")
    assert {"SidekiqDefaultLatencyScaling", "SidekiqPullLatencyScaling", "SpotFallbackFunction", "SidekiqPullOnDemandService"} <= set(standard)
    spec = standard["SidekiqPullLatencyScaling"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert spec["MetricName"] == "SidekiqQueueLatency" and {"Name": "Service", "Value": "pull"} in spec["Dimensions"]
    assert standard["SidekiqPullOnDemandService"]["Properties"]["DesiredCount"] == 0


def test_maintenance_schedule_targets_the_state_machine_only_after_launch():
    before = resources(ServicesLaunched="false")["MaintenanceSchedule"]["Properties"]
    after = resources(ServicesLaunched="true")["MaintenanceSchedule"]["Properties"]
    assert before["State"] == "DISABLED" and after["State"] == "ENABLED"
    assert after["Target"]["Arn"].logical_id == "MaintenanceStateMachine"
    params = TEMPLATE["Parameters"]
    assert params["MaintenancePreviewCardsDays"]["MinValue"] == 14 and params["MaintenanceMediaDays"]["MinValue"] >= 1


def test_budget_follows_the_profile_unless_given():
    def limit(**p):
        return resources(**p)["SpendBudget"]["Properties"]["Budget"]["BudgetLimit"]["Amount"]
    assert limit(Profile="micro") == 46 and limit(Profile="standard") == 72
    assert str(limit(Profile="micro", MonthlyBudgetUsd=120)) == "120"


def test_bandwidth_alarm_only_where_cloudfront_metrics_exist():
    assert "BandwidthAlarm" in resources(UseCloudFront="true")
    assert "BandwidthAlarm" not in resources(UseCloudFront="false")
    assert "CloudFrontBudget" not in resources(UseCloudFront="false")


def test_run_task_permissions_are_scoped_to_the_toolbox():
    for name in ("MaintenanceStateMachine", "UpgradeStateMachine"):
        statements = [s for p in TEMPLATE["Resources"][name]["Properties"]["Policies"] if "Statement" in p for s in p["Statement"]]
        run = next(s for s in statements if s["Action"] == "ecs:RunTask")
        assert "-toolbox:*" in json.dumps(run["Resource"]) and "ecs:cluster" in json.dumps(run["Condition"])


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_cost_model_prices_every_resource_type_of_the_template(profile):
    report = estimate(TEMPLATE, profile)
    assert report.unpriced == []
    assert any(i.name == "CloudWatch alarms" for i in report.items)

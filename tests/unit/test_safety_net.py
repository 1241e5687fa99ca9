"""The safety net: RDS storage grows by itself, and what takes a small Mastodon down alarms the operator topic
(evaluated per profile from template.yaml with the cost model's evaluator; the EventBridge rule is matched by
moto's implementation of EventBridge patterns, not ours, in tests/emulated/test_safety_net_events.py)."""

import json
from pathlib import Path

import pytest

from tootstack_dev.cost.model import estimate
from tootstack_dev.cost.template_eval import ResourceRef, TemplateEvaluator
from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
EVENTS = Path(__file__).parents[1] / "data" / "ecs_events"
TOPIC = ResourceRef("OperatorTopic")
PROFILES = ("micro", "standard")


def resources(**params):
    return TemplateEvaluator(TEMPLATE, {k: str(v) for k, v in params.items()}).resources()


def alarms(found):
    return {lid: r["Properties"] for lid, r in found.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def watching(found, namespace, metric):
    """Alarms of `found` on namespace/metric that notify the operator topic, as {logical id: properties}."""
    return {lid: p for lid, p in alarms(found).items()
            if p.get("Namespace") == namespace and p.get("MetricName") == metric and TOPIC in p.get("AlarmActions", [])}


def dims(props):
    return {d["Name"]: d["Value"] for d in props["Dimensions"]}


@pytest.mark.parametrize("storage", TEMPLATE["Parameters"]["DatabaseStorageGiB"]["AllowedValues"])
def test_database_storage_can_grow_beyond_every_initial_size(storage):
    """RDS storage autoscaling is on when MaxAllocatedStorage is set above AllocatedStorage
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIOPS.Autoscaling.html)."""
    db = resources(DatabaseStorageGiB=storage)["Database"]["Properties"]
    assert int(db["MaxAllocatedStorage"]) >= max(100, 2 * int(db["AllocatedStorage"]))


@pytest.mark.parametrize("profile", PROFILES)
def test_each_failure_that_takes_mastodon_down_alarms_the_operator(profile):
    found = resources(Profile=profile, ServicesLaunched="true")
    db = {"DBInstanceIdentifier": ResourceRef("Database")}
    storage = watching(found, "AWS/RDS", "FreeStorageSpace")
    assert [dims(p) for p in storage.values()] == [db]
    assert all(p["ComparisonOperator"] == "LessThanThreshold" and p["Threshold"] >= 1 << 30 for p in storage.values())
    credits = watching(found, "AWS/RDS", "CPUCreditBalance")
    assert [dims(p) for p in credits.values()] == [db]
    connections = watching(found, "AWS/RDS", "DatabaseConnections")
    assert [dims(p) for p in connections.values()] == [db]
    memory = watching(found, "AWS/ElastiCache", "DatabaseMemoryUsagePercentage")
    assert [dims(p) for p in memory.values()] == [{"CacheClusterId": "${Redis}-001"}]   # the primary node's id
    assert all(p["ComparisonOperator"] == "GreaterThanThreshold" and p["Threshold"] <= 90 for p in memory.values())
    lb = ResourceRef("LoadBalancer", "LoadBalancerFullName")
    for group in ("WebTargetGroup", "StreamingTargetGroup"):
        per_group = {"LoadBalancer": lb, "TargetGroup": ResourceRef(group, "TargetGroupFullName")}
        assert per_group in [dims(p) for p in watching(found, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count").values()], group
        assert per_group in [dims(p) for p in watching(found, "AWS/ApplicationELB", "UnHealthyHostCount").values()], group
    assert [dims(p) for p in watching(found, "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count").values()] == [{"LoadBalancer": lb}]
    core = watching(found, "ECS/ContainerInsights", "RunningTaskCount")
    assert [dims(p) for p in core.values()] == [{"ClusterName": ResourceRef("Cluster"), "ServiceName": ResourceRef("CoreService", "Name")}]
    assert all(p["TreatMissingData"] == "breaching" for p in core.values())   # no task publishes no datapoint
    assert "containerInsights" in json.dumps(found["Cluster"]["Properties"]["ClusterSettings"])
    for lid, props in alarms(found).items():
        metrics = [m for m in props.get("Metrics", []) if "MetricStat" in m]
        assert len(metrics) <= 1, f"{lid}: CloudWatch bills per alarm metric; the cost model counts one per alarm"


def test_core_down_alarm_exists_from_the_first_deploy():
    """Services are no longer gated by a launch flag (ServiceCounts keeps their counts), so the core-down
    alarm exists whatever the former flag says; it also tells the operator first boot has not started core."""
    assert "CoreDownAlarm" in resources(ServicesLaunched="false")
    assert "CoreDownAlarm" in resources(ServicesLaunched="true")


@pytest.mark.parametrize("db_class", ["db.t4g.micro", "db.t4g.small", "db.t4g.medium", "db.t4g.large"])
def test_connections_alarm_fires_below_the_instance_class_limit(db_class):
    """RDS PostgreSQL's default max_connections is LEAST({DBInstanceClassMemory/9531392}, 5000)
    (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections);
    DBInstanceClassMemory is below the class's nominal memory, so the nominal figure bounds it from above."""
    nominal_gib = {"db.t4g.micro": 1, "db.t4g.small": 2, "db.t4g.medium": 4, "db.t4g.large": 8}[db_class]
    limit = min(nominal_gib * (1 << 30) // 9531392, 5000)
    threshold = resources(DatabaseInstanceClass=db_class)["DatabaseConnectionsAlarm"]["Properties"]["Threshold"]
    assert 0.6 * limit <= int(threshold) <= 0.8 * limit
    by_profile = resources(DatabaseInstanceClass="profile")["DatabaseConnectionsAlarm"]["Properties"]["Threshold"]
    assert by_profile == resources(DatabaseInstanceClass="db.t4g.micro")["DatabaseConnectionsAlarm"]["Properties"]["Threshold"]


def test_operator_topic_accepts_the_alarms_and_the_core_stop_rule():
    statements = resources()["OperatorTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    by_service = {s["Principal"]["Service"]: s for s in statements}
    assert "cloudwatch.amazonaws.com" in by_service
    events = by_service["events.amazonaws.com"]
    assert events["Action"] == "sns:Publish"
    assert events["Condition"] == {"ArnEquals": {"aws:SourceArn": ResourceRef("CoreTaskStoppedRule", "Arn")}}


@pytest.mark.parametrize("profile", PROFILES)
def test_the_safety_net_is_priced(profile):
    """`tootstack cost` counts every alarm the profile deploys ($0.10 per standard-resolution alarm metric,
    https://aws.amazon.com/cloudwatch/pricing/): ten safety-net alarms = $1.00/month on both profiles."""
    report = estimate(TEMPLATE, profile)
    line = next(i for i in report.items if i.name == "CloudWatch alarms")
    safety = {"DatabaseFreeStorageAlarm", "DatabaseCpuCreditsAlarm", "DatabaseConnectionsAlarm", "RedisMemoryAlarm",
              "WebTarget5xxAlarm", "StreamingTarget5xxAlarm", "LoadBalancer5xxAlarm", "WebUnhealthyTargetsAlarm",
              "StreamingUnhealthyTargetsAlarm", "CoreDownAlarm"}
    assert safety <= set(line.resources)
    assert sum(0.10 for lid in line.resources if lid in safety) == pytest.approx(1.00)

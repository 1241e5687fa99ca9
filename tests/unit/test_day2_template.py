"""template.yaml's day-2 operations section, evaluated per profile with the cost model's evaluator."""

import json

import pytest

from tootstack_dev.cost.model import estimate
from tootstack_dev.cost.template_eval import TemplateEvaluator
from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")


def resources(**params):
    return TemplateEvaluator(TEMPLATE, {k: str(v) for k, v in params.items()}).resources()


def steady_count(found, service_props):
    """A service's task count after first boot: ServiceCounts keeps what runs, which is what the first-boot
    state machine started (its <Key>DesiredCount substitution; 0 for a service first boot leaves alone)."""
    ref = service_props["DesiredCount"]
    assert ref.logical_id == "ServiceCounts"
    subs = found["FirstBootStateMachine"]["Properties"]["DefinitionSubstitutions"]
    return int(str(subs.get(f"{ref.attribute}DesiredCount", 0)))


def test_scheduler_service_is_never_scaled():
    for profile in ("micro", "standard"):
        found = resources(Profile=profile)
        targets = [r["Properties"]["ResourceId"] for r in found.values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"]
        assert targets, profile
        assert "CoreService" in found
        assert not any("CoreService" in json.dumps(t, default=str) for t in targets)


def test_scaling_is_there_from_the_first_deploy_and_micro_scales_only_web():
    # No flag decides: the scalable targets exist from the first deploy (min 0; no load, no alarm, no task
    # before first boot) and a samconfig.toml that still passes ServicesLaunched changes nothing.
    assert set(resources(ServicesLaunched="false")) == set(resources(ServicesLaunched="true")) == set(resources())
    micro = resources(Profile="micro")
    assert "WebScalableTarget" in micro and "SidekiqDefaultScalableTarget" not in micro and "QueueLatencyFunction" not in micro
    standard = resources(Profile="standard")
    assert {"SidekiqDefaultLatencyScaling", "SidekiqPullLatencyScaling", "SpotFallbackFunction", "SidekiqPullOnDemandService"} <= set(standard)
    spec = standard["SidekiqPullLatencyScaling"]["Properties"]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert spec["MetricName"] == "SidekiqQueueLatency" and {"Name": "Service", "Value": "pull"} in spec["Dimensions"]
    count = standard["SidekiqPullOnDemandService"]["Properties"]["DesiredCount"]   # what it runs now (0 until a fallback)
    assert (count.logical_id, count.attribute) == ("ServiceCounts", "SidekiqPullOnDemand")


def test_maintenance_schedule_targets_the_state_machine():
    after = resources()["MaintenanceSchedule"]["Properties"]
    assert after["State"] == "ENABLED"   # from the first deploy: no flag to flip
    assert after["Target"]["Arn"].logical_id == "MaintenanceStateMachine"
    params = TEMPLATE["Parameters"]
    assert params["MaintenancePreviewCardsDays"]["MinValue"] == 14 and params["MaintenanceMediaDays"]["MinValue"] >= 1


def test_budget_follows_the_profile_unless_given():
    def limit(**p):
        return resources(**p)["SpendBudget"]["Properties"]["Budget"]["BudgetLimit"]["Amount"]

    for profile in ("micro", "standard"):
        monthly = estimate(TEMPLATE, profile).monthly
        # A month at no load must not trip the budget, and real growth (2x) must.
        assert monthly < int(limit(Profile=profile)) < 2 * monthly, profile
    assert str(limit(Profile="micro", MonthlyBudgetUsd=120)) == "120"


def test_bandwidth_alarm_only_where_cloudfront_metrics_exist():
    assert "BandwidthAlarm" in resources(UseCloudFront="true")
    assert "BandwidthAlarm" not in resources(UseCloudFront="false")
    assert "CloudFrontBudget" not in resources(UseCloudFront="false")


def test_run_task_permissions_are_scoped_to_the_toolbox():
    # one managed policy for every state machine that runs toolbox tasks
    statements = TEMPLATE["Resources"]["RunToolboxTasksPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    run = next(s for s in statements if s["Action"] == "ecs:RunTask")
    assert "-toolbox:*" in json.dumps(run["Resource"]) and "ecs:cluster" in json.dumps(run["Condition"])
    passing = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    for name in ("FirstBootStateMachine", "MaintenanceStateMachine", "UpgradeStateMachine", "RunOneOffStateMachine"):
        policies = TEMPLATE["Resources"][name]["Properties"]["Policies"]
        assert {"Ref": "RunToolboxTasksPolicy"} in policies, name
        inline = [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
        assert not any(s["Action"] in ("ecs:RunTask", "iam:PassRole") for s in inline), name   # no drifting copies


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_cost_model_prices_every_resource_type_of_the_template(profile):
    report = estimate(TEMPLATE, profile)
    assert report.unpriced == []
    assert any(i.name == "CloudWatch alarms" for i in report.items)


def test_upgrade_covers_every_mastodon_service_including_the_fallback_twin():
    env = resources(Profile="standard")["UpgradeFunction"]["Properties"]["Environment"]["Variables"]
    names = json.dumps(env["SERVICE_NAMES"], default=str)
    for service in ("CoreService", "WebService", "SidekiqDefaultService", "SidekiqPullService", "SidekiqPullOnDemandService"):
        assert service in names
    assert env["SCHEDULER_SERVICE"].logical_id == "CoreService"      # deployed stop-first
    micro = resources(Profile="micro")["UpgradeFunction"]["Properties"]["Environment"]["Variables"]
    assert "SidekiqPullOnDemandService" not in json.dumps(micro["SERVICE_NAMES"], default=str)


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_exactly_one_running_process_takes_the_scheduler_queue(profile):
    found = resources(Profile=profile)
    takers = []
    for lid, res in found.items():
        if res["Type"] != "AWS::ECS::Service" or steady_count(found, res["Properties"]) == 0:
            continue
        td = found[res["Properties"]["TaskDefinition"].logical_id]["Properties"]
        command = [str(c) for container in td["ContainerDefinitions"] for c in container.get("Command") or []]
        if "scheduler" in command:
            takers.append(lid)
            assert res["Properties"]["DeploymentConfiguration"]["MaximumPercent"] == 100, lid   # stop-first
            scaled = [r for r in found.values() if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget"
                      and lid in json.dumps(r["Properties"]["ResourceId"], default=str)]
            assert not scaled, f"{lid} runs the scheduler queue and must never scale"
    assert len(takers) == 1, takers


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_core_task_packs_web_streaming_and_the_scheduler_and_is_all_that_runs_at_no_load(profile):
    found = resources(Profile=profile)
    containers = {c["Name"]: c for c in found["CoreTaskDefinition"]["Properties"]["ContainerDefinitions"]}
    assert set(containers) == {"web", "streaming", "sidekiq"}
    assert [p["ContainerPort"] for p in containers["web"]["PortMappings"]] == [3000]
    assert [p["ContainerPort"] for p in containers["streaming"]["PortMappings"]] == [4000]
    queues = [str(c) for c in containers["sidekiq"]["Command"]]
    for queue in ("default,8", "push,6", "ingress,4", "mailers,2", "fasp", "pull", "scheduler"):
        assert queues[queues.index(queue) - 1] == "-q", queue
    core = found["CoreService"]["Properties"]
    assert {(lb["ContainerName"], lb["TargetGroupArn"].logical_id) for lb in core["LoadBalancers"]} == {
        ("web", "WebTargetGroup"), ("streaming", "StreamingTargetGroup")}
    assert steady_count(found, core) == 1
    assert core["DeploymentConfiguration"]["MaximumPercent"] == 100 and core["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    # the burst services wait at 0 tasks; the burst worker never takes the scheduler queue
    for burst in ("WebService", "SidekiqDefaultService", "SidekiqPullService"):
        assert steady_count(found, found[burst]["Properties"]) == 0, burst
    assert "scheduler" not in [str(c) for c in found["SidekiqTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Command"]]
    fargate = [i.name for i in estimate(TEMPLATE, profile).items if i.name.startswith("Fargate")]
    assert fargate == ["Fargate CoreService (ARM64 on-demand)"]


def test_burst_services_scale_out_from_zero_on_the_core_tasks_load():
    standard = resources(Profile="standard")
    for target, policy, alarms in (("WebScalableTarget", "WebScaleOut", ("WebRequestsHighAlarm", "CoreCpuHighAlarm")),
                                   ("SidekiqDefaultScalableTarget", "SidekiqDefaultScaleFromZero", ("SidekiqDefaultBacklogAlarm",))):
        assert str(standard[target]["Properties"]["MinCapacity"]) == "0", target
        step = standard[policy]["Properties"]
        assert step["ScalingTargetId"].logical_id == target
        config = step["StepScalingPolicyConfiguration"]
        assert config["AdjustmentType"] == "ChangeInCapacity" and config["StepAdjustments"][0]["ScalingAdjustment"] == 1
        for alarm in alarms:
            assert standard[alarm]["Properties"]["AlarmActions"][0].logical_id == policy, alarm
    cpu = standard["CoreCpuHighAlarm"]["Properties"]
    dimensions = {d["Name"]: d["Value"] for d in cpu["Dimensions"]}
    assert cpu["Namespace"] == "AWS/ECS" and dimensions["ServiceName"].logical_id == "CoreService"
    # ... and web back in to 0: target tracking would hold 1 task while any request arrives
    step_in = standard["WebScaleIn"]["Properties"]["StepScalingPolicyConfiguration"]
    assert step_in["StepAdjustments"] == [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": -1}]
    low = standard["WebRequestsLowAlarm"]["Properties"]
    assert low["AlarmActions"][0].logical_id == "WebScaleIn" and low["ComparisonOperator"] == "LessThanThreshold"
    assert low["Threshold"] < standard["WebRequestsHighAlarm"]["Properties"]["Threshold"]   # hysteresis
    assert low["TreatMissingData"] == "breaching"       # no requests at all publishes no datapoint
    micro = resources(Profile="micro")
    assert {"WebScaleOut", "WebScaleIn"} <= set(micro) and "SidekiqDefaultScaleFromZero" not in micro


def test_pull_queue_never_waits_for_the_pull_service_and_it_scales_out_from_zero():
    standard = resources(Profile="standard")
    command = [str(c) for c in standard["SidekiqTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Command"]]
    assert command[command.index("pull") - 1] == "-q"       # burst default workers drain pull (lowest weight)
    core = [str(c) for c in standard["CoreTaskDefinition"]["Properties"]["ContainerDefinitions"][2]["Command"]]
    assert core[core.index("pull") - 1] == "-q"             # and so does the core task at no load
    assert steady_count(standard, standard["SidekiqPullService"]["Properties"]) == 0
    assert str(standard["SidekiqPullScalableTarget"]["Properties"]["MinCapacity"]) == "0"
    step = standard["SidekiqPullScaleFromZero"]["Properties"]
    assert step["ScalingTargetId"].logical_id == "SidekiqPullScalableTarget"
    config = step["StepScalingPolicyConfiguration"]
    assert config["AdjustmentType"] == "ChangeInCapacity" and config["StepAdjustments"][0]["ScalingAdjustment"] == 1
    alarm = standard["SidekiqPullBacklogAlarm"]["Properties"]
    assert alarm["AlarmActions"][0].logical_id == "SidekiqPullScaleFromZero"
    assert {"Name": "Service", "Value": "pull"} in alarm["Dimensions"] and alarm["MetricName"] == "SidekiqQueueLatency"
    assert "SidekiqPullScaleFromZero" not in resources(Profile="micro")


@pytest.mark.parametrize(("params", "nodes"), [({"Profile": "micro"}, 1), ({"Profile": "standard"}, 1),
                                               ({"Profile": "standard", "CacheReplica": "true"}, 2),
                                               ({"Profile": "micro", "CacheReplica": "true"}, 1)])
def test_valkey_replica_only_on_request_and_never_at_the_cost_of_tls(params, nodes):
    redis = resources(**params)["Redis"]["Properties"]
    assert int(str(redis["NumCacheClusters"])) == nodes
    assert str(redis["AutomaticFailoverEnabled"]).lower() == str(redis["MultiAZEnabled"]).lower() == str(nodes == 2).lower()
    assert redis["TransitEncryptionEnabled"] is True and redis["TransitEncryptionMode"] == "required"
    assert redis["AtRestEncryptionEnabled"] is True


def test_profile_sizing_is_what_the_cost_model_prices():
    for profile in ("micro", "standard"):
        found = resources(Profile=profile)
        web = found["WebTaskDefinition"]["Properties"]
        assert (str(web["Cpu"]), str(web["Memory"])) == ("512", "1024"), profile
        core = found["CoreTaskDefinition"]["Properties"]
        assert (str(core["Cpu"]), str(core["Memory"])) == ("512", {"micro": "2048", "standard": "3072"}[profile]), profile
        assert str(found["WebScalableTarget"]["Properties"]["MinCapacity"]) == "0", profile
        assert found["Database"]["Properties"]["DBInstanceClass"] == "db.t4g.micro", profile
    big = resources(Profile="standard", DatabaseInstanceClass="db.t4g.small")
    assert big["Database"]["Properties"]["DBInstanceClass"] == "db.t4g.small"
    names = {i.name for i in estimate(TEMPLATE, "standard").items}
    assert "Fargate SidekiqPullService (X86_64 Spot)" not in names      # 0 tasks at no load
    # the core task's address only: the ALB is internal behind the CloudFront VPC origin
    assert estimate(TEMPLATE, "standard").public_ipv4 == 1 and estimate(TEMPLATE, "micro").public_ipv4 == 1


def test_queue_latency_runs_outside_the_vpc_and_reads_redis_through_the_in_vpc_probe():
    fn = TEMPLATE["Resources"]["QueueLatencyFunction"]["Properties"]
    probe = TEMPLATE["Resources"]["RedisProbeFunction"]["Properties"]
    assert "VpcConfig" not in fn and "VpcConfig" in probe and "Policies" not in probe     # probe: no AWS API
    env = fn["Environment"]["Variables"]
    assert "REDIS_HOST" not in env and "RedisProbeFunction" in json.dumps(env["REDIS_PROBE_FUNCTION"], default=str)
    statements = {s["Sid"]: s for s in fn["Policies"][0]["Statement"]}
    assert set(statements) == {"RedisCredential", "ReadQueuesInVpc", "PublishLatency"}
    assert statements["RedisCredential"]["Action"] == "secretsmanager:GetSecretValue" and "RedisSecret" in json.dumps(statements["RedisCredential"]["Resource"], default=str)
    assert statements["ReadQueuesInVpc"]["Action"] == "lambda:InvokeFunction" and "RedisProbeFunction" in json.dumps(statements["ReadQueuesInVpc"]["Resource"], default=str)
    assert statements["PublishLatency"]["Action"] == "cloudwatch:PutMetricData"
    assert statements["PublishLatency"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "tootstack"}}
    assert int(fn["Timeout"]) > int(probe["Timeout"])      # the publisher outlives the probe it waits for

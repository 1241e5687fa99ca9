"""Lifecycle seams, the parts read from the parsed template, the README, samconfig.toml and pure functions:
the workflows an operator runs one after another keep the site serving and the version moving forward. The
seams run against moto and real registries are in tests/emulated/test_lifecycle_seams.py (sections match)."""

import json

from tootstack_dev.local.template import load_template, project_root

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


# --- a stale upgrade lock never silences maintenance or blocks the next upgrade ----------------------
def test_a_running_upgrade_still_holds_its_lock():
    """The holder's status decides: RUNNING (or a holder that cannot be found out) keeps the lock."""
    from tootstack.maintenance import Settings, gate

    defaults = Settings(media_days=7, preview_cards_days=180, prune_accounts=False)
    held = {"execution": "u-1", "version": "v4.5.3"}
    for state in ("RUNNING", None):
        decision = gate({}, defaults=defaults, services=[], is_halted=lambda s: False, lock=lambda: held,
                        holder_state=lambda h, state=state: state)
        assert decision["proceed"] is False
    for state in ("ABORTED", "FAILED", "TIMED_OUT", "SUCCEEDED", "GONE"):
        decision = gate({}, defaults=defaults, services=[], is_halted=lambda s: False, lock=lambda: held,
                        holder_state=lambda h, state=state: state)
        assert decision["proceed"] is True and state in decision["reason"]


def test_the_skip_alarm_alerts_the_operator_after_a_day():
    template = load_template(ROOT / "template.yaml")
    alarm = template["Resources"]["MaintenanceSkippedAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("tootstack", "MaintenanceSkippedSeconds")
    assert alarm["Threshold"] <= 86400 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "OperatorTopic"}]
    gate_env = template["Resources"]["MaintenanceGateFunction"]["Properties"]["Environment"]["Variables"]
    assert "MAINTENANCE_STATE_PARAMETER" in gate_env


# --- no deploy changes a running service's task count; nobody flips a flag -----------------------------
def _template():
    return load_template(ROOT / "template.yaml")


def services_spec_digest(template):
    """A digest of every ECS service's properties but DesiredCount (ServiceCounts.ServicesSpec): a
    change to a service's literal properties must change ServiceCounts' properties too, or CloudFormation
    would update the service with the count ServiceCounts answered last time."""
    import hashlib

    spec = {lid: {k: v for k, v in r.get("Properties", {}).items() if k != "DesiredCount"}
            for lid, r in sorted(template.get("Resources", {}).items()) if r.get("Type") == "AWS::ECS::Service"}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_every_service_count_is_what_it_runs_now_and_servicecounts_reruns_with_any_service_change():
    """CloudFormation sends a present DesiredCount on every update of a service ("As soon as anything
    changes in the ECS Service Resource, CloudFormation overwrites the DesiredCount",
    https://github.com/aws/containers-roadmap/issues/493) and an absent one defaults to 1 on create
    (https://github.com/aws/aws-cdk/pull/13130: "when creating a service ... desired count of 1").
    So each service takes ServiceCounts' answer, and ServiceCounts' properties change whenever a
    service's properties change (every value they take from elsewhere, and a digest of the literals)."""
    from tootstack_dev.local.cfn_update import references

    template = _template()
    resources = template["Resources"]
    counts = resources["ServiceCounts"]["Properties"]
    services = {lid: r for lid, r in resources.items() if r["Type"] == "AWS::ECS::Service"}
    assert services
    for lid, service in services.items():
        props = service["Properties"]
        assert props["DesiredCount"]["Fn::GetAtt"][0] == "ServiceCounts", lid
        assert counts["Services"][props["DesiredCount"]["Fn::GetAtt"][1]] == props["ServiceName"], lid
        taken = references({k: v for k, v in props.items() if k != "DesiredCount"}) - {"Cluster"}
        assert taken <= references(counts["Inputs"]), (lid, taken - references(counts["Inputs"]))
    assert counts["ServicesSpec"] == services_spec_digest(template), (
        f"a service's properties changed: set ServiceCounts.ServicesSpec to {services_spec_digest(template)!r}")
    assert "Launched" not in template.get("Conditions", {})


def test_samconfig_and_readme_ask_no_flag():
    samconfig = (ROOT / "samconfig.toml").read_text()
    assert "ServicesLaunched" not in samconfig
    readme = (ROOT / "README.md").read_text()
    first_deploy = readme[readme.index("**First deploy.**"):readme.index("### CloudFront certificate")]
    assert "ServicesLaunched" not in first_deploy and "set " not in first_deploy.lower().replace("sets ", "")


# --- a deploy never lowers the running version -----------------------------------------------------------
def test_version_guard_runs_before_any_service_and_whenever_a_task_definition_changes():
    resources = _template()["Resources"]
    guard = resources["VersionGuard"]["Properties"]
    listed = {ref["Ref"] for ref in guard["TaskDefinitions"]}
    assert listed == {lid for lid, r in resources.items() if r["Type"] == "AWS::ECS::TaskDefinition"}
    for lid, service in resources.items():
        if service["Type"] == "AWS::ECS::Service":
            depends = service.get("DependsOn", [])
            assert "VersionGuard" in ([depends] if isinstance(depends, str) else depends), lid


def test_the_upgrade_tells_what_to_put_in_samconfig():
    from tootstack.upgrade.steps import UpgradeConfig, samconfig_values

    cfg = UpgradeConfig(cluster="c", services=[], scheduler_service="core", toolbox_family="t", lock_parameter="l",
                        version_parameter="v", deployed_image="ghcr.io/mastodon/mastodon:v4.5.2",
                        deployed_streaming_image="ghcr.io/mastodon/mastodon-streaming:v4.5.2")
    assert samconfig_values("v4.5.3", cfg) == ("MastodonImage=ghcr.io/mastodon/mastodon:v4.5.3 "
                                               "StreamingImage=ghcr.io/mastodon/mastodon-streaming:v4.5.3")


# --- a sam deploy that restarts the core serves throughout --------------------------------------------------
def test_the_core_moves_only_between_the_bridge_and_its_release():
    resources = _template()["Resources"]

    def depends(lid):
        value = resources[lid].get("DependsOn", [])
        return [value] if isinstance(value, str) else value

    assert "CoreBridge" in depends("CoreService") and "WebService" in depends("CoreBridge")
    assert "CoreService" in depends("CoreBridgeRelease")
    assert resources["CoreBridge"]["Properties"]["CoreTaskDefinition"] == {"Ref": "CoreTaskDefinition"}
    assert resources["CoreBridgeRelease"]["Properties"]["Token"] == {"Fn::GetAtt": ["CoreBridge", "Bridged"]}
    config = resources["CoreService"]["Properties"]["DeploymentConfiguration"]
    assert (config["MaximumPercent"], config["MinimumHealthyPercent"]) == (100, 0)   # still one scheduler


# --- the rehearsal's stack update follows CloudFormation --------------------------------------------------
def test_update_plan_follows_replacements_in_dependency_order():
    """A task definition is replaced on update (a new revision: what refers to it is updated too); a service
    is updated in place (its Ref/GetAtt values stay: what refers to it is not); dependencies order the
    updates, including those through stood-in resources (`extra_edges`)."""
    from tootstack_dev.local.cfn_update import plan

    def resources(image):
        return {
            "Td": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"ContainerDefinitions": [{"Image": image}]}},
            "Web": {"Type": "AWS::ECS::Service", "Properties": {"TaskDefinition": {"Ref": "Td"}}},
            "Core": {"Type": "AWS::ECS::Service", "Properties": {"TaskDefinition": {"Ref": "Td"}}},
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": {"S": {"Fn::GetAtt": ["Core", "Name"]}}}}},
        }

    old, new = resources("a"), resources("b")
    order = plan(old, new, ["Td"], [], extra_edges={"Core": {"Web"}})
    assert order == ["Td", "Web", "Core"]                       # Fn refers to Core's name, which does not change
    assert plan(old, resources("a"), [], []) == []


def test_the_redeploy_check_sees_an_unbridged_core_restart():
    from tootstack_dev.rehearsal.redeploy_stage import serving_gaps

    restart = {"service": "core", "desired": 1, "previous": "core:1", "task_definition": "core:2"}
    assert serving_gaps([dict(restart, running={"core": 1, "web": 1})]) == []
    assert serving_gaps([dict(restart, running={"core": 1, "web": 0})]) == ["the core restarted (stop-first) with no web task serving"]
    assert serving_gaps([dict(restart, desired=0, task_definition="core:1", running={"web": 1})]) == ["the core was set to 0 tasks"]
    assert serving_gaps([dict(restart, service="web", desired=0, running={})]) == []

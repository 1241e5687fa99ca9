"""Lifecycle seams: the workflows an operator runs one after another (deploy, first boot, create admin,
upgrade, sam deploy, one-off, rotation, maintenance) keep the site serving and the version moving forward.
Each test here failed on the code before the seam was closed. The seams checked on the parsed template and
pure functions are in tests/unit/test_lifecycle_seams_units.py (sections match)."""

import json

import boto3
import pytest

from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.template import project_root

from tests.emulated import test_upgrade
from tests.emulated.test_upgrade import OUTCOMES, STACK, _setup

registries = test_upgrade.registries  # the upgrade tests' fixture, for this module's tests too

ROOT = project_root()


# --- one-off, admin and first-boot tasks run the version the services run ---------------------------
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
    return _upgrade_with_admin(local_aws, registries, f"{STACK}-admin")


def _upgrade_with_admin(local_aws, registries, task_families):
    """The upgrade state machine with a toolbox and an admin family on v4.5.2 (TASK_FAMILIES as given)."""
    OUTCOMES.clear()
    local_aws.ecs_outcome = lambda service, td: OUTCOMES.get(service, "COMPLETED")
    aws, arn, ecs, toolbox, ecr = _setup(local_aws, *registries, env_overrides={"TASK_FAMILIES": task_families})
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


def test_a_failed_pre_migration_leaves_the_families_on_the_running_version(upgrade_with_admin):
    """Register made the new toolbox/admin revisions the families' latest; the pre-deployment migrations
    failed, nothing was deployed: one-off, admin and first-boot tasks must run the old version again."""
    aws, arn, ecs, created, _ = upgrade_with_admin
    aws.tasks.on(f"{STACK}-toolbox", TaskResult(1, ["PG::UndefinedColumn"]))
    services = {s["serviceName"]: s["taskDefinition"] for s in ecs.describe_services(cluster=STACK, services=["web", "streaming"])["services"]}
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "PreDeploymentMigrationFailed"
    for role in ("toolbox", "admin"):
        assert _latest(ecs, f"{STACK}-{role}") == (created[role], ["ghcr.io/mastodon/mastodon:v4.5.2"])
    assert {s["serviceName"]: s["taskDefinition"] for s in ecs.describe_services(cluster=STACK, services=["web", "streaming"])["services"]} == services


def test_a_register_failing_partway_leaves_the_families_on_the_running_version(local_aws, registries):
    """A family Register cannot read (here: one that does not exist) fails it after the toolbox and admin
    families got their new revisions: those are deregistered before the failure is answered."""
    aws, arn, ecs, families, _ = _upgrade_with_admin(local_aws, registries, f"{STACK}-admin,{STACK}-missing")
    toolbox, admin = families["toolbox"], families["admin"]
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "UpgradeFailed"
    for family, before in ((f"{STACK}-toolbox", toolbox), (f"{STACK}-admin", admin)):
        assert _latest(ecs, family) == (before, ["ghcr.io/mastodon/mastodon:v4.5.2"])


# --- a stale upgrade lock never silences maintenance or blocks the next upgrade ----------------------
def _maintenance(local_aws, lock_parameter):
    from tootstack_dev.local.template import LocalFunction

    ecs = boto3.client("ecs", region_name="us-east-1")
    network = {k: v for k, v in _network().items()}
    env = {"CLUSTER_NAME": STACK, "SERVICE_NAMES": "web", "UPGRADE_LOCK_PARAMETER": lock_parameter,
           "MAINTENANCE_STATE_PARAMETER": f"/{STACK}/maintenance/state", "MAINTENANCE_MEDIA_DAYS": "7",
           "MAINTENANCE_PREVIEW_CARDS_DAYS": "180", "MAINTENANCE_PRUNE_ACCOUNTS": "false", "STACK_NAME": STACK}
    fn = LocalFunction("MaintenanceGateFunction", ROOT / "functions/maintenance_gate", "app.handler", {})
    gate = local_aws.create_function("maintenance-gate", fn, env)
    assert ecs.describe_clusters(clusters=[STACK])["clusters"]
    return local_aws.create_state_machine_from_file(
        ROOT / "statemachines/maintenance.asl.json", "maintenance",
        {"MaintenanceGateFunctionArn": gate, "ToolboxTaskFamily": f"{STACK}-toolbox", **network})


def _network():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    cluster = boto3.client("ecs", region_name="us-east-1").describe_clusters(clusters=[STACK])["clusters"][0]["clusterArn"]
    return {"ClusterArn": cluster, "SubnetA": subnets[0], "SubnetB": subnets[1], "SecurityGroup": group}


def _skipped_seconds_metric():
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    found = cloudwatch.list_metrics(Namespace="tootstack", MetricName="MaintenanceSkippedSeconds")["Metrics"]
    return found


# moto 5.2's runTask.sync waiter thread of the stopped execution raises after StopExecution (it compares its
# timeout setting, a dict, to an int); the execution itself is ABORTED as in AWS, which the test asserts.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_upgrade_stopped_in_the_middle_does_not_block_the_next_upgrade_or_maintenance(upgrade_with_admin):
    """Stopped from the console during its pre-deployment migration (StopExecution: no Catch, no release
    step runs), the upgrade leaves its lock behind. The next maintenance run goes ahead (the holder is
    ABORTED), and the next upgrade recovers the lock and completes."""
    import threading
    import time

    aws, arn, ecs, _, _ = upgrade_with_admin
    lock = f"/{STACK}/upgrade/lock"
    started, proceed = threading.Event(), threading.Event()

    def slow_migration(run):
        if not started.is_set():
            started.set()
            proceed.wait(20)
        return TaskResult(0, ["== migrated =="])

    aws.tasks.on(f"{STACK}-toolbox", slow_migration)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    stopped = sfn.start_execution(stateMachineArn=arn, name="stopped-midway", input=json.dumps({"version": "v4.5.3"}))["executionArn"]
    assert started.wait(20), "the pre-deployment migration never started"
    sfn.stop_execution(executionArn=stopped, error="Operator", cause="stopped from the console")
    proceed.set()
    deadline = time.monotonic() + 20
    while sfn.describe_execution(executionArn=stopped)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sfn.describe_execution(executionArn=stopped)["status"] == "ABORTED"
    ssm = boto3.client("ssm", region_name="us-east-1")
    held = json.loads(ssm.get_parameter(Name=lock)["Parameter"]["Value"])
    assert held["execution"] == "stopped-midway"          # the stop left the lock behind

    maintenance = _maintenance(aws, lock)
    aws.tasks.on(f"{STACK}-toolbox", TaskResult(0, ["Removed 0 media attachments"]))
    ran = aws.run_state_machine(maintenance, {})
    assert ran.status == "SUCCEEDED" and ran.output["status"] == "done", ran.output
    assert any(" is ABORTED" in e.get("stateExitedEventDetails", {}).get("output", "") for e in ran.history)
    assert _skipped_seconds_metric(), "the gate publishes MaintenanceSkippedSeconds on every run"

    aws.tasks.on(f"{STACK}-toolbox", TaskResult(0, ["== migrated =="]))
    upgraded = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert upgraded.status == "SUCCEEDED", (upgraded.error, upgraded.cause)
    prepared = [json.loads(e["stateExitedEventDetails"]["output"])["prepared"]["value"] for e in upgraded.history
                if e.get("stateExitedEventDetails", {}).get("name") == "Prepare"]
    assert prepared[0]["recovered_stale_lock"] == {"execution": "stopped-midway", "status": "ABORTED", "version": "v4.5.3"}
    assert ssm.get_parameter(Name=f"/{STACK}/mastodon/version")["Parameter"]["Value"] == "v4.5.3"
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name=lock)


def test_skipped_maintenance_is_counted_until_it_runs_again(local_aws):
    from tootstack.maintenance import skips

    ssm, parameter = boto3.client("ssm", region_name="us-east-1"), f"/{STACK}/maintenance/state"
    assert skips.record(ssm, parameter, proceed=True, now=1000) == 0
    assert skips.record(ssm, parameter, proceed=False, now=2000) == 0
    assert skips.record(ssm, parameter, proceed=False, now=2000 + 86400) == 86400
    assert skips.record(ssm, parameter, proceed=True, now=2000 + 2 * 86400) == 0
    assert skips.record(ssm, parameter, proceed=False, now=3000 + 2 * 86400) == 0


# --- no deploy changes a running service's task count; nobody flips a flag -----------------------------
def test_service_counts_answers_what_runs_and_zero_before_the_services_exist(local_aws):
    from tootstack.deploy_guard import service_counts

    ecs = boto3.client("ecs", region_name="us-east-1")
    wanted = {"Core": "core", "Web": "web"}
    assert service_counts(ecs, "not-created-yet", wanted) == {"Core": "0", "Web": "0"}
    ecs.create_cluster(clusterName="c")
    td = ecs.register_task_definition(family="f", containerDefinitions=[{"name": "x", "image": "i", "memory": 8}])["taskDefinition"]["taskDefinitionArn"]
    assert service_counts(ecs, "c", wanted) == {"Core": "0", "Web": "0"}
    ecs.create_service(cluster="c", serviceName="core", taskDefinition=td, desiredCount=1)
    ecs.create_service(cluster="c", serviceName="web", taskDefinition=td, desiredCount=3)
    assert service_counts(ecs, "c", wanted) == {"Core": "1", "Web": "3"}


# --- a deploy never lowers the running version -----------------------------------------------------------
def test_version_guard_refuses_older_images_and_names_what_to_set(local_aws):
    from tootstack.deploy_guard import VersionWouldGoDown, check_version, running_version

    ssm, ecs = boto3.client("ssm", region_name="us-east-1"), boto3.client("ecs", region_name="us-east-1")
    parameter = "/s/mastodon/version"
    assert running_version(ecs, ssm, "none", ["core"], parameter) == (None, "")
    ssm.put_parameter(Name=parameter, Value="v4.5.3", Type="String")
    running, where = running_version(ecs, ssm, "none", ["core"], parameter)
    images = {"MastodonImage": "ghcr.io/mastodon/mastodon:v4.5.2", "StreamingImage": "ghcr.io/mastodon/mastodon-streaming:v4.5.2"}
    with pytest.raises(VersionWouldGoDown) as refused:
        check_version(images, running, where)
    text = str(refused.value)
    assert "MastodonImage=ghcr.io/mastodon/mastodon:v4.5.3 StreamingImage=ghcr.io/mastodon/mastodon-streaming:v4.5.3" in text
    assert "/s/mastodon/version" in text and "Nothing was changed" in text
    same = {k: v.replace("v4.5.2", "v4.5.3") for k, v in images.items()}
    assert check_version(same, running, where) == {"Version": "v4.5.3", "Running": "v4.5.3"}
    assert check_version({k: v.replace("v4.5.2", "v4.6.0") for k, v in images.items()}, running, where)["Version"] == "v4.6.0"


def test_version_guard_reads_a_running_task_definitions_version_tag(local_aws):
    """An upgrade that ran but whose record is missing still counts: its task definitions carry the tag."""
    from tootstack.deploy_guard import VERSION_TAG, running_version

    ssm, ecs = boto3.client("ssm", region_name="us-east-1"), boto3.client("ecs", region_name="us-east-1")
    ecs.create_cluster(clusterName="c")
    td = ecs.register_task_definition(family="core", containerDefinitions=[{"name": "x", "image": "i", "memory": 8}],
                                      tags=[{"key": VERSION_TAG, "value": "v4.5.4"}])["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="c", serviceName="core", taskDefinition=td, desiredCount=1)
    assert running_version(ecs, ssm, "c", ["core"], "/c/mastodon/version") == ("v4.5.4", "run by the core service")


# --- a sam deploy that restarts the core serves throughout --------------------------------------------------
@pytest.fixture
def core_and_web(local_aws):
    ecs = boto3.client("ecs", region_name="us-east-1")
    autoscaling = boto3.client("application-autoscaling", region_name="us-east-1")
    ecs.create_cluster(clusterName="c")

    def td(family):
        return ecs.register_task_definition(family=family, containerDefinitions=[{"name": "x", "image": "i", "memory": 8}])["taskDefinition"]["taskDefinitionArn"]

    core_td, web_td = td("core"), td("web")
    ecs.create_service(cluster="c", serviceName="core", taskDefinition=core_td, desiredCount=1)
    ecs.create_service(cluster="c", serviceName="web", taskDefinition=web_td, desiredCount=0)
    autoscaling.register_scalable_target(ServiceNamespace="ecs", ResourceId="service/c/web",
                                         ScalableDimension="ecs:service:DesiredCount", MinCapacity=0, MaxCapacity=8)
    return ecs, autoscaling, boto3.client("ssm", region_name="us-east-1"), core_td, td("core")


def _web(ecs, autoscaling):
    target = autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=["service/c/web"])["ScalableTargets"][0]
    return ecs.describe_services(cluster="c", services=["web"])["services"][0]["desiredCount"], target["MinCapacity"]


def test_core_bridge_holds_a_web_task_while_the_core_restarts_and_gives_the_minimum_back(core_and_web):
    from tootstack.deploy_guard import bridge, release_bridge

    ecs, autoscaling, ssm, current, new = core_and_web
    kwargs = dict(cluster="c", core="core", web="web", record_parameter="/c/deploy/bridge", wait=lambda s: None)
    assert bridge(ecs, ssm, autoscaling, core_task_definition=current, **kwargs)["Bridged"] == "no"   # nothing restarts
    assert _web(ecs, autoscaling) == (0, 0)
    held = bridge(ecs, ssm, autoscaling, core_task_definition=new, **kwargs)
    assert held["Bridged"] not in ("no", "") and _web(ecs, autoscaling) == (1, 1)
    assert release_bridge(ssm, autoscaling, ecs, cluster="c", record_parameter="/c/deploy/bridge") == {"Released": "web"}
    assert _web(ecs, autoscaling)[1] == 0      # minimum back; autoscaling's quiet scale-in removes the task
    assert release_bridge(ssm, autoscaling, ecs, cluster="c", record_parameter="/c/deploy/bridge") == {"Released": "nothing held"}


def test_a_bridge_after_a_failed_deploy_keeps_the_minimum_from_before_the_first_bridge(core_and_web):
    """A deploy whose core update failed leaves the record (its release never ran) and web's minimum at 1;
    the next bridge must not record that 1, or its release gives back 1 and web keeps a burst task."""
    from tootstack.deploy_guard import bridge, release_bridge

    ecs, autoscaling, ssm, _, new = core_and_web
    kwargs = dict(cluster="c", core="core", web="web", record_parameter="/c/deploy/bridge", wait=lambda s: None)
    first = bridge(ecs, ssm, autoscaling, core_task_definition=new, **kwargs)
    second = bridge(ecs, ssm, autoscaling, core_task_definition=new, **kwargs)
    assert second["Bridged"] not in ("no", "", first["Bridged"]) and _web(ecs, autoscaling)[1] == 1
    assert release_bridge(ssm, autoscaling, ecs, cluster="c", record_parameter="/c/deploy/bridge") == {"Released": "web"}
    assert _web(ecs, autoscaling)[1] == 0


def test_no_bridge_before_first_boot(core_and_web):
    from tootstack.deploy_guard import bridge

    ecs, autoscaling, ssm, _, new = core_and_web
    ecs.update_service(cluster="c", service="core", desiredCount=0)
    result = bridge(ecs, ssm, autoscaling, cluster="c", core="core", web="web", core_task_definition=new,
                    record_parameter="/c/deploy/bridge", wait=lambda s: None)
    assert result["Bridged"] == "no" and _web(ecs, autoscaling) == (0, 0)


# --- the deploy guard handler as CloudFormation invokes it -------------------------------------------------
def test_deploy_guard_handler_answers_cloudformation(local_aws, response_url, monkeypatch):
    """The sample event (events/deploy_guard.json) and a refused VersionGuard, through the real handler:
    counts as Data, a refusal as FAILED with the values to set, Delete a no-op."""
    from tootstack_dev.local.aws import LambdaContext
    from tootstack_dev.local.template import LocalFunction

    url, received = response_url
    monkeypatch.setenv("STACK_NAME", "s")
    handler = LocalFunction("DeployGuardFunction", ROOT / "functions/deploy_guard", "app.handler", {}).entrypoint
    event = json.loads((ROOT / "events/deploy_guard.json").read_text())
    event["ResponseURL"] = url
    handler(event, LambdaContext("deploy-guard"))
    assert received[-1]["Status"] == "SUCCESS"
    assert received[-1]["Data"] == {"Core": "0", "Web": "0", "SidekiqDefault": "0", "SidekiqPull": "0"}

    boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/s/mastodon/version", Value="v4.5.3", Type="String")
    # CloudFormation always names the stack (a request without StackId is refused as malformed): one that is
    # not rolling back, so the guard checks the version.
    stack_id = boto3.client("cloudformation", region_name="us-east-1").create_stack(StackName="s", TemplateBody=json.dumps(
        {"Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}))["StackId"]
    guard = dict(event, ResourceType="Custom::VersionGuard", LogicalResourceId="VersionGuard", StackId=stack_id, ResourceProperties={
        "ClusterName": "none", "Services": ["core"], "VersionParameter": "/s/mastodon/version",
        "Images": {"MastodonImage": "ghcr.io/mastodon/mastodon:v4.5.2", "StreamingImage": "ghcr.io/mastodon/mastodon-streaming:v4.5.2"}})
    handler(guard, LambdaContext("deploy-guard"))
    assert received[-1]["Status"] == "FAILED"
    assert "VersionWouldGoDown" in received[-1]["Reason"] and "MastodonImage=ghcr.io/mastodon/mastodon:v4.5.3" in received[-1]["Reason"]
    handler(dict(guard, RequestType="Delete", PhysicalResourceId="s-VersionGuard"), LambdaContext("deploy-guard"))
    assert received[-1]["Status"] == "SUCCESS"


def test_deploy_guard_handler_releases_the_bridge_while_the_stack_rolls_back(core_and_web, response_url, monkeypatch):
    """CloudFormation rolls CoreBridge back after the core went back to its old revision: the handler gives
    web's minimum back (a new bridge there would be followed by no release)."""
    import inspect

    from tootstack.deploy_guard import bridge
    from tootstack_dev.local.aws import LambdaContext
    from tootstack_dev.local.template import LocalFunction

    ecs, autoscaling, ssm, _, new = core_and_web
    bridge(ecs, ssm, autoscaling, cluster="c", core="core", web="web", core_task_definition=new,
           record_parameter="/s/deploy/bridge", wait=lambda s: None)
    assert _web(ecs, autoscaling) == (1, 1)
    url, received = response_url
    monkeypatch.setenv("STACK_NAME", "s")
    handler = LocalFunction("DeployGuardFunction", ROOT / "functions/deploy_guard", "app.handler", {}).entrypoint
    # moto cannot put a stack into UPDATE_ROLLBACK_IN_PROGRESS: the stack-status lookup is the one thing replaced.
    monkeypatch.setitem(inspect.unwrap(handler).__globals__, "_rolling_back", lambda stack_id: True)
    event = dict(json.loads((ROOT / "events/deploy_guard.json").read_text()), ResponseURL=url, ResourceType="Custom::CoreBridge",
                 LogicalResourceId="CoreBridge", ResourceProperties={
                     "ClusterName": "c", "CoreService": "core", "BridgeService": "web",
                     "CoreTaskDefinition": new, "RecordParameter": "/s/deploy/bridge"})
    handler(event, LambdaContext("deploy-guard"))
    assert received[-1]["Status"] == "SUCCESS" and received[-1]["Data"] == {"Bridged": "rollback"}
    assert _web(ecs, autoscaling)[1] == 0
    assert not ssm.get_parameters(Names=["/s/deploy/bridge"])["Parameters"]

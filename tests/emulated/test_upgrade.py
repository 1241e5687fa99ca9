"""Upgrade state machine in moto's engine (LocalAws) with the real upgrade handler, real registries for the
mirror step (a plain "upstream" and a basic-auth "ECR"), simulated ECS tasks for the migrations."""

import json

import boto3
import pytest

from tootstack.crashloop import HALT_TAG
from tootstack.errors import InvalidInput
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.images import push_image
from tootstack_dev.local.registry import Registry
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack import locks
from tootstack.upgrade import steps
from tootstack.upgrade.version import compare, parse_version, version_of_image

from tests.fixtures.ecs import cluster_with_network

ROOT = project_root()
STACK = "up"
LOCK = f"/{STACK}/upgrade/lock"
VERSION = f"/{STACK}/mastodon/version"
SERVICES = {"web": "mastodon", "streaming": "streaming", "sidekiq-default": "mastodon", "scheduler": "mastodon"}


OUTCOMES = {}


@pytest.fixture(scope="module")
def registries():
    """One "upstream" (anonymous) and one "ECR" (basic auth) for the module: the release is pushed once;
    mirroring into ECR again is the idempotent warm path the re-run test wants anyway."""
    with Registry(auth="none") as upstream, Registry(auth="basic") as ecr:
        for repo in ("mastodon/mastodon", "mastodon/mastodon-streaming"):
            push_image(upstream, repo, "v4.5.3", [4096], platforms=("linux/amd64", "linux/arm64"))
        yield upstream, ecr


@pytest.fixture
def upgrade(local_aws, registries):
    OUTCOMES.clear()
    local_aws.ecs_outcome = lambda service, td: OUTCOMES.get(service, "COMPLETED")
    return _setup(local_aws, *registries)


def _setup(local_aws, registry_plain, registry_basic, services=None, desired=None, env_overrides=None):
    services = services or SERVICES
    ecs, network = cluster_with_network(STACK)
    images = {"mastodon": "ghcr.io/mastodon/mastodon:v4.5.2", "streaming": "ghcr.io/mastodon/mastodon-streaming:v4.5.2"}

    def register(family, role):
        return ecs.register_task_definition(
            family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512", memory="1024",
            containerDefinitions=[{"name": family.split("-")[-1], "image": images[role], "essential": True,
                                   "environment": [{"name": "RAILS_ENV", "value": "production"}]}],
        )["taskDefinition"]["taskDefinitionArn"]

    toolbox = register(f"{STACK}-toolbox", "mastodon")
    for name, role in services.items():
        ecs.create_service(cluster=STACK, serviceName=name, taskDefinition=register(f"{STACK}-{name}", role),
                           desiredCount=(desired or {}).get(name, 1))
    local_aws.use_ecr_registry(registry_basic)   # the account's ECR registry, as ecr:GetAuthorizationToken names it
    env = {
        "CLUSTER_NAME": STACK, "SERVICE_NAMES": ",".join(services), "SCHEDULER_SERVICE": "scheduler",
        "TOOLBOX_FAMILY": f"{STACK}-toolbox", "UPGRADE_LOCK_PARAMETER": LOCK, "VERSION_PARAMETER": VERSION,
        "IMAGE_SOURCES": f"mastodon={registry_plain.host_port}/mastodon/mastodon,"
                         f"streaming={registry_plain.host_port}/mastodon/mastodon-streaming",
        "IMAGE_DESTINATIONS": f"mastodon={registry_basic.host_port}/mastodon,streaming={registry_basic.host_port}/mastodon-streaming",
        "STACK_NAME": STACK, **(env_overrides or {}),
    }
    fn = LocalFunction("UpgradeFunction", ROOT / "functions/upgrade", "app.handler", {})
    arn = local_aws.create_state_machine_from_file(
        ROOT / "statemachines/upgrade.asl.json", "upgrade",
        {"UpgradeFunctionArn": local_aws.create_function("upgrade", fn, env), **network},
    )
    local_aws.emulate_time(arn)   # the guard's 30 s waits between checks pass at once
    return local_aws, arn, ecs, toolbox, registry_basic


def _live(ecs):
    found = ecs.describe_services(cluster=STACK, services=list(SERVICES))["services"]
    return {s["serviceName"]: s for s in found}


def _images(ecs, arn):
    return [c["image"] for c in ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"]]


def _lock_held():
    try:
        boto3.client("ssm", region_name="us-east-1").get_parameter(Name=LOCK)
        return True
    except Exception:  # ParameterNotFound
        return False


def test_upgrade_in_order_pinned_and_idempotent(upgrade, capsys):
    aws, arn, ecs, toolbox, ecr = upgrade
    before = {n: s["taskDefinition"] for n, s in _live(ecs).items()}
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    live = _live(ecs)
    for name, role in SERVICES.items():
        assert live[name]["taskDefinition"] != before[name]
        (image,) = _images(ecs, live[name]["taskDefinition"])
        repo = "mastodon" if role == "mastodon" else "mastodon-streaming"
        assert image.startswith(f"{ecr.host_port}/{repo}@sha256:")
    # Migrations: pre-deployment (skip post) first, then post-deployment, both with the new pinned toolbox.
    runs = aws.tasks.runs
    assert [r.command for r in runs] == [["bundle", "exec", "rails", "db:migrate"]] * 2
    assert runs[0].environment.get("SKIP_POST_DEPLOYMENT_MIGRATIONS") == "true"
    assert "SKIP_POST_DEPLOYMENT_MIGRATIONS" not in runs[1].environment
    assert runs[0].task_definition_arn != toolbox and _images(ecs, runs[0].task_definition_arn)[0].startswith(f"{ecr.host_port}/mastodon@sha256:")
    # The scheduler is replaced stop-first: never two schedulers.
    config = live["scheduler"]["deploymentConfiguration"]
    assert config["maximumPercent"] == 100 and config["minimumHealthyPercent"] == 0
    ssm = boto3.client("ssm", region_name="us-east-1")
    assert ssm.get_parameter(Name=VERSION)["Parameter"]["Value"] == "v4.5.3"
    assert not _lock_held()
    assert execution.output["status"] == "upgraded" and execution.output["previous"] == "v4.5.2"
    assert "v4.5.3" in execution.output["next_deploy"]
    # The registry credential the mirror step used appears in no state, history or log line.
    assert ecr.password not in execution.raw and ecr.password not in capsys.readouterr().out
    # Re-run: same version, no new revision, nothing redeployed.
    again = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert again.status == "SUCCEEDED"
    assert {n: s["taskDefinition"] for n, s in _live(ecs).items()} == {n: s["taskDefinition"] for n, s in live.items()}


@pytest.mark.parametrize(("version", "needle"), [("v4.5.1", "downgrade"), ("latest", "v4.5.3")])
def test_refuses_downgrade_and_bad_versions_changing_nothing(upgrade, version, needle):
    aws, arn, ecs, _, _ = upgrade
    before = {n: s["taskDefinition"] for n, s in _live(ecs).items()}
    execution = aws.run_state_machine(arn, {"version": version})
    assert execution.status == "FAILED" and execution.error == "InvalidInput"
    assert needle in execution.cause
    assert aws.tasks.runs == [] and not _lock_held()
    assert {n: s["taskDefinition"] for n, s in _live(ecs).items()} == before


def test_unknown_version_is_refused_after_asking_upstream(upgrade):
    aws, arn, ecs, _, _ = upgrade
    execution = aws.run_state_machine(arn, {"version": "v4.9.9"})
    assert execution.status == "FAILED" and execution.error == "InvalidInput"
    assert aws.tasks.runs == [] and not _lock_held()


def test_concurrent_upgrade_is_refused(upgrade):
    """The lock's holder is still RUNNING (a waiting execution stands in for it): refused, lock kept."""
    aws, arn, _, _, _ = upgrade
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    waiting = aws.create_state_machine("holder", {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}})
    holder = sfn.start_execution(stateMachineArn=waiting, name="other")["executionArn"]
    try:
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=LOCK, Type="String", Value=json.dumps({"execution": "other", "execution_arn": holder, "version": "v4.5.3"}))
        execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
        assert execution.status == "FAILED" and execution.error == "UpgradeInProgress"
        assert _lock_held()   # the other execution's lock is left alone
    finally:
        sfn.stop_execution(executionArn=holder)


def test_failed_pre_migration_deploys_nothing(upgrade):
    aws, arn, ecs, _, _ = upgrade
    aws.tasks.on(f"{STACK}-toolbox", TaskResult(1, ["PG::UndefinedColumn"]))
    before = {n: s["taskDefinition"] for n, s in _live(ecs).items()}
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "PreDeploymentMigrationFailed"
    assert {n: s["taskDefinition"] for n, s in _live(ecs).items()} == before
    assert len(aws.tasks.runs) == 1 and not _lock_held()


def test_circuit_breaker_failure_rolls_every_service_back(upgrade):
    aws, arn, ecs, _, _ = upgrade
    OUTCOMES["streaming"] = "FAILED"
    before = {n: s["taskDefinition"] for n, s in _live(ecs).items()}
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "UpgradeRolledBack"
    assert {n: s["taskDefinition"] for n, s in _live(ecs).items()} == before
    assert len(aws.tasks.runs) == 1 and not _lock_held()
    guard = [json.loads(e["stateExitedEventDetails"]["output"])["guard"]["value"] for e in execution.history
             if e.get("stateExitedEventDetails", {}).get("name") == "Guard"]
    assert guard and guard[-1]["status"] == "failed" and "streaming" in guard[-1]["detail"]


def test_crashloop_halt_during_rollout_rolls_back(upgrade):
    aws, arn, ecs, _, _ = upgrade
    before = {n: s["taskDefinition"] for n, s in _live(ecs).items()}

    def halt_web_on_first_run(run):
        if len(aws.tasks.runs) == 0:   # the pre-deployment migration: the web service then crashloops
            web = ecs.describe_services(cluster=STACK, services=["web"])["services"][0]["serviceArn"]
            ecs.tag_resource(resourceArn=web, tags=[{"key": HALT_TAG, "value": "scale_to_zero"}])
        return TaskResult(0)

    aws.tasks.on(f"{STACK}-toolbox", halt_web_on_first_run)
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "UpgradeRolledBack"
    assert {n: s["taskDefinition"] for n, s in _live(ecs).items()} == before
    assert len(aws.tasks.runs) == 1          # no post-deployment migration
    assert not _lock_held()


CORE_SERVICES = {"core": "mastodon", "web": "mastodon", "sidekiq-default": "mastodon"}


@pytest.fixture
def bridged_upgrade(local_aws, registries):
    """The stack's shape: the core service (web + streaming + the scheduler) stop-first, web and Sidekiq
    burst services at 0 tasks, web autoscaled from a minimum of 0."""
    OUTCOMES.clear()
    order = []

    def outcome(service, td):
        order.append((service, td))
        return OUTCOMES.get(service, "COMPLETED")

    local_aws.ecs_outcome = outcome
    aws, arn, ecs, toolbox, ecr = _setup(local_aws, *registries, services=CORE_SERVICES,
                                         desired={"core": 1, "web": 0, "sidekiq-default": 0},
                                         env_overrides={"SCHEDULER_SERVICE": "core", "BRIDGE_SERVICE": "web"})
    autoscaling = boto3.client("application-autoscaling", region_name="us-east-1")
    autoscaling.register_scalable_target(ServiceNamespace="ecs", ResourceId=f"service/{STACK}/web",
                                         ScalableDimension="ecs:service:DesiredCount", MinCapacity=0, MaxCapacity=8)
    return aws, arn, ecs, autoscaling, order


def _web_minimum(autoscaling):
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[f"service/{STACK}/web"])["ScalableTargets"]
    return target["MinCapacity"], target["MaxCapacity"]


def test_core_restart_is_bridged_by_a_web_task_on_the_new_version(bridged_upgrade):
    aws, arn, ecs, autoscaling, order = bridged_upgrade
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    live = {s["serviceName"]: s for s in ecs.describe_services(cluster=STACK, services=list(CORE_SERVICES))["services"]}
    # web went to the new version with a task before the core (stop-first) was touched
    moved = [service for service, _ in order]
    assert moved.index("web") < moved.index("core") and moved.count("core") == 1
    assert dict(order)["web"] == live["web"]["taskDefinition"] and live["web"]["desiredCount"] == 1
    config = live["core"]["deploymentConfiguration"]
    assert config["maximumPercent"] == 100 and config["minimumHealthyPercent"] == 0
    guards = [json.loads(e["stateExitedEventDetails"]["output"])["guard"]["value"]["status"] for e in execution.history
              if e.get("stateExitedEventDetails", {}).get("name") == "Guard"]
    assert guards == ["bridged", "steady"]
    # the minimum is back at 0 (autoscaling's quiet-traffic scale-in removes the bridge task later)
    assert _web_minimum(autoscaling) == (0, 8) and not _lock_held()
    # a re-run is a no-op: nothing moves, the minimum is untouched
    order.clear()
    assert aws.run_state_machine(arn, {"version": "v4.5.3"}).status == "SUCCEEDED"
    assert order == [] and _web_minimum(autoscaling) == (0, 8)


def test_failed_core_rollout_rolls_back_and_gives_web_its_minimum_back(bridged_upgrade):
    aws, arn, ecs, autoscaling, order = bridged_upgrade
    before = {s["serviceName"]: s["taskDefinition"] for s in ecs.describe_services(cluster=STACK, services=list(CORE_SERVICES))["services"]}
    OUTCOMES["core"] = "FAILED"
    execution = aws.run_state_machine(arn, {"version": "v4.5.3"})
    assert execution.status == "FAILED" and execution.error == "UpgradeRolledBack"
    after = {s["serviceName"]: s["taskDefinition"] for s in ecs.describe_services(cluster=STACK, services=list(CORE_SERVICES))["services"]}
    assert after == before
    assert _web_minimum(autoscaling) == (0, 8) and not _lock_held()


class _Ecs:
    """describe_services answers for the guard's unit tests."""

    def __init__(self, deployments):
        self.deployments = deployments

    def describe_services(self, cluster, services):
        return {"services": [{"serviceName": s, "taskDefinition": "td:2", "deployments": self.deployments} for s in services]}


CFG = steps.UpgradeConfig("c", ["web"], "scheduler", "tb", "/l", "/v", {}, max_checks=3)
PLAN = {"target": {"web": "td:2"}, "previous": {"web": "td:1"}}


@pytest.mark.parametrize(("deployments", "checks", "status"), [
    ([{"status": "PRIMARY", "taskDefinition": "td:2", "rolloutState": "COMPLETED"}], 0, "steady"),
    ([{"status": "PRIMARY", "taskDefinition": "td:2", "rolloutState": "IN_PROGRESS"},
      {"status": "ACTIVE", "taskDefinition": "td:1"}], 0, "in_progress"),
    ([{"status": "PRIMARY", "taskDefinition": "td:2", "rolloutState": "IN_PROGRESS"}], 2, "timed_out"),
    ([{"status": "PRIMARY", "taskDefinition": "td:2", "rolloutState": "FAILED", "rolloutStateReason": "circuit breaker"}], 0, "failed"),
    ([{"status": "PRIMARY", "taskDefinition": "td:1", "rolloutState": "COMPLETED"}], 0, "failed"),
])
def test_guard_reads_rollout_state(deployments, checks, status):
    assert steps.check(PLAN, checks, ecs=_Ecs(deployments), cfg=CFG, is_halted=lambda s: False)["status"] == status


def test_versions():
    with pytest.raises(InvalidInput):
        parse_version("v4.5")
    assert parse_version("v4.5.0-rc.1") < parse_version("v4.5.0") < parse_version("v4.5.3") < parse_version("v4.10.0")
    assert compare("v4.5.3", "v4.5.3") == "same" and compare("v4.5.3", None) == "upgrade"
    with pytest.raises(InvalidInput, match="downgrade"):
        compare("v4.4.9", "v4.5.0")
    assert version_of_image("ghcr.io/mastodon/mastodon:v4.5.2") == "v4.5.2"
    assert version_of_image("123.dkr.ecr.us-east-1.amazonaws.com/mastodon@sha256:" + "a" * 64) is None
    assert steps.image_role("127.0.0.1:5000/mastodon-streaming@sha256:x", {"mastodon": {"source": "a", "dest": "b"},
                                                                          "streaming": {"source": "c", "dest": "d"}}) == "streaming"


def test_sample_event_parses():
    event = json.loads((ROOT / "events/upgrade.json").read_text())
    parse_version(event["input"]["version"])


class _RecordingEcs:
    def __init__(self):
        self.calls = []

    def update_service(self, **kwargs):
        self.calls.append(kwargs)


def test_every_service_with_the_scheduler_queue_is_replaced_stop_first():
    """SCHEDULER_SERVICE may name several services (a comma list): each one is replaced stop-first."""
    cfg = steps.UpgradeConfig("c", ["web", "sidekiq-default"], "sidekiq-default,sidekiq-scheduler", "tb", "/l", "/v")
    ecs = _RecordingEcs()
    for service in ("web", "sidekiq-default", "sidekiq-scheduler"):
        steps._update(ecs, cfg, service, "td:2")  # the one place the deployment config is set
    configs = {c["service"]: c.get("deploymentConfiguration") for c in ecs.calls}
    assert configs["web"] is None
    for service in ("sidekiq-default", "sidekiq-scheduler"):
        assert configs[service]["maximumPercent"] == 100 and configs[service]["minimumHealthyPercent"] == 0


class _Ssm:
    class exceptions:
        class ParameterNotFound(Exception):
            pass

    def __init__(self, value=None):
        self.value = value

    def get_parameter(self, Name):
        if self.value is None:
            raise self.exceptions.ParameterNotFound()
        return {"Parameter": {"Value": self.value}}


class _TdEcs:
    def __init__(self, image):
        self.image = image

    def describe_services(self, cluster, services):
        return {"services": [{"taskDefinition": "td:1"}]}

    def describe_task_definition(self, taskDefinition, include=None):
        return {"taskDefinition": {"containerDefinitions": [{"image": self.image}]}, "tags": []}


def test_current_version_is_the_newest_known():
    pinned = "123.dkr.ecr.us-east-1.amazonaws.com/tootstack/mastodon@sha256:" + "a" * 64
    cfg = steps.UpgradeConfig("c", ["web"], "s", "tb", "/l", "/v", deployed_image="ghcr.io/mastodon/mastodon:v4.5.4")
    assert steps.current_version(_TdEcs(pinned), _Ssm("v4.5.3"), cfg) == "v4.5.4"   # a later sam deploy counts
    cfg.deployed_image = ""
    assert steps.current_version(_TdEcs(pinned), _Ssm(None), cfg) is None
    assert steps.current_version(_TdEcs("ghcr.io/mastodon/mastodon:v4.5.2"), _Ssm(None), cfg) == "v4.5.2"


def test_a_service_without_a_known_image_is_refused_not_skipped():
    cfg = steps.UpgradeConfig("c", ["web"], "s", "tb", "/l", "/v",
                              images={"mastodon": {"source": "ghcr.io/mastodon/mastodon", "dest": "1.dkr.ecr/x/mastodon"}})
    with pytest.raises(steps.TootstackError, match="no container runs a known Mastodon image"):
        steps._check_recognised("web", _TdEcs("docker.io/library/nginx:1.27").describe_task_definition("td:1")["taskDefinition"], cfg)
    steps._check_recognised("web", _TdEcs("1.dkr.ecr/x/mastodon@sha256:" + "b" * 64).describe_task_definition("td:1")["taskDefinition"], cfg)


def test_mirror_step_mounts_shared_layers_from_the_repository_it_mirrored_first():
    """The streaming image shares base layers with the Mastodon one: mounted in ECR, never pulled upstream twice."""
    calls = []

    class _Result:
        digest = "sha256:" + "a" * 64

    def fake_mirror_image(source, destination, **kwargs):
        calls.append((destination, kwargs["mount_from"]))
        return _Result()

    cfg = steps.UpgradeConfig("c", ["web"], "core", "tb", "/l", "/v", images={
        "mastodon": {"source": "ghcr.io/mastodon/mastodon", "dest": "123.dkr.ecr.us-east-1.amazonaws.com/st/mastodon"},
        "streaming": {"source": "ghcr.io/mastodon/mastodon-streaming", "dest": "123.dkr.ecr.us-east-1.amazonaws.com/st/streaming"}})
    pinned = steps.mirror("v4.5.3", cfg, fake_mirror_image)
    assert calls == [("123.dkr.ecr.us-east-1.amazonaws.com/st/mastodon:v4.5.3", ()),
                     ("123.dkr.ecr.us-east-1.amazonaws.com/st/streaming:v4.5.3", ("st/mastodon",))]
    assert pinned["streaming"] == "123.dkr.ecr.us-east-1.amazonaws.com/st/streaming@sha256:" + "a" * 64


def test_an_unreadable_upgrade_lock_is_an_error_never_unlocked():
    """locks.read_lock (the upgrade, the maintenance gate, first boot) turns an SSM failure into DependencyUnavailable."""
    from botocore.exceptions import ClientError

    from tootstack.errors import DependencyUnavailable

    class _Denied(_Ssm):
        def get_parameter(self, Name):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParameter")

    with pytest.raises(DependencyUnavailable, match="AccessDeniedException|ClientError"):
        locks.read_lock(_Denied(), "/s/upgrade/lock")


@pytest.mark.parametrize("secret", [{"dest": {"username": "registry", "password": "pw"}},
                                    {"source": {"auths": {}}, "dest": {"username": "r", "password": "p"}}])
def test_the_mirror_credentials_secret_names_no_destination(monkeypatch, secret):
    """The upgrade's destination is the account's ECR registry, its credentials ECR's token: the secret holds
    source credentials only, in the mirror's shapes (tootstack.mirror.auth.parse_source_credentials). A
    `dest` key (the rehearsal once pointed the upgrade at its registries with one) is refused, never used."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("upgrade_app_under_test", ROOT / "functions/upgrade/app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    monkeypatch.setenv("MIRROR_CREDENTIALS_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:up/mirror")
    monkeypatch.setattr(app.parameters, "get_secret", lambda *args, **kwargs: secret)
    with pytest.raises(InvalidInput, match="source credentials must be"):
        app._mirror_credentials()


def test_the_upgrade_mirrors_into_the_registry_ecr_names_with_its_scheme(local_aws, registry_basic):
    """ecr:GetAuthorizationToken's proxyEndpoint (https://<account>.dkr.ecr.<region>.amazonaws.com in AWS,
    https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_AuthorizationData.html) decides how the
    destination is reached: moto's own answer is https, a local registry named by the emulation is http."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("upgrade_app_scheme", ROOT / "functions/upgrade/app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app._mirror_credentials() == {"keyed_src_creds": {}, "dest_creds": ("AWS", "123456789012-auth-token"),
                                         "plain_http": False}
    local_aws.use_ecr_registry(registry_basic)
    assert app._mirror_credentials() == {"keyed_src_creds": {},
                                         "dest_creds": (registry_basic.username, registry_basic.password), "plain_http": True}

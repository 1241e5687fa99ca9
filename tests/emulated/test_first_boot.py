"""The first-boot state machine in moto's Step Functions engine (LocalAws), with the real secrets
bootstrap and Redis rotation handlers routed in-process, a real redis-server with TLS standing in for
ElastiCache, and the toolbox task simulated: it receives the secrets ECS would inject and must AUTH to
Redis with them. Then a scan of everything captured for every generated secret value."""

import json
import logging

import pytest

from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.redis_auth.backends import AclBackend
from tootstack.redis_auth.credentials import Credential, Endpoint, works
from tootstack_dev.local.redis import rotation_handler
from tootstack_dev.rehearsal.first_boot_stage import secret_version_values

ROOT = project_root()
REGION = "us-east-1"
SERVICES = {"core": 1, "web": 2, "sidekiq-default": 1, "sidekiq-pull": 0}   # pull: "not run in this profile"


class Stack:
    """The pieces of template.yaml first boot touches, created in moto."""

    def __init__(self, aws, redis_server, mirror=False):
        self.aws, self.redis = aws, redis_server
        sm, ecs, ec2, iam = (aws.client(s) for s in ("secretsmanager", "ecs", "ec2", "iam"))
        # as template.yaml creates them (GenerateSecretString placeholders)
        self.secrets = {
            "app": sm.create_secret(Name="tootstack/app", SecretString=json.dumps({"initialized": "false", "bootstrap_nonce": "n" * 32}))["ARN"],
            "database": sm.create_secret(Name="tootstack/database", SecretString=json.dumps({"username": "mastodon", "password": "d" * 40}))["ARN"],
            "redis": sm.create_secret(Name="tootstack/redis", SecretString=json.dumps({"username": "mastodon", "password": "r" * 64}))["ARN"],
            "smtp": sm.create_secret(Name="tootstack/smtp", SecretString=json.dumps({"username": "", "password": "s" * 32}))["ARN"],
        }
        iam.create_user(UserName="tootstack-smtp")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
        self.sg = ec2.create_security_group(GroupName="worker", Description="w", VpcId=vpc)["GroupId"]
        self.cluster = ecs.create_cluster(clusterName="tootstack")["cluster"]["clusterArn"]
        secret_refs = [
            {"name": key, "valueFrom": f"{self.secrets['app']}:{key}::"}
            for key in ("SECRET_KEY_BASE", "OTP_SECRET", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY",
                        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
                        "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT")
        ] + [
            {"name": "DB_PASS", "valueFrom": f"{self.secrets['database']}:password::"},
            {"name": "REDIS_USER", "valueFrom": f"{self.secrets['redis']}:username::"},
            {"name": "REDIS_PASSWORD", "valueFrom": f"{self.secrets['redis']}:password::"},
            {"name": "SMTP_LOGIN", "valueFrom": f"{self.secrets['smtp']}:username::"},
            {"name": "SMTP_PASSWORD", "valueFrom": f"{self.secrets['smtp']}:password::"},
        ]
        self.toolbox = ecs.register_task_definition(
            family="tootstack-toolbox", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="1024", memory="2048",
            containerDefinitions=[{
                "name": "toolbox", "image": "ghcr.io/mastodon/mastodon:v4.5.2", "essential": True,
                "command": ["bundle", "exec", "rails", "--version"],
                "environment": [{"name": "REDIS_HOST", "value": redis_server.host}, {"name": "REDIS_PORT", "value": str(redis_server.port)}],
                "secrets": secret_refs,
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/tootstack/toolbox", "awslogs-region": REGION, "awslogs-stream-prefix": "toolbox"}},
            }],
        )["taskDefinition"]["taskDefinitionArn"]
        for name in SERVICES:
            ecs.create_service(cluster="tootstack", serviceName=name, taskDefinition=self.toolbox, desiredCount=0)

        bootstrap_env = {"APP_SECRET_ARN": self.secrets["app"], "DATABASE_SECRET_ARN": self.secrets["database"],
                         "REDIS_SECRET_ARN": self.secrets["redis"], "SMTP_SECRET_ARN": self.secrets["smtp"],
                         "SMTP_USER_NAME": "tootstack-smtp", "SES_REGION": REGION, "STACK_NAME": "tootstack"}
        self.bootstrap_fn_target = LocalFunction("SecretsBootstrapFunction", ROOT / "functions/secrets_bootstrap", "app.handler", {})
        self.bootstrap_fn = aws.create_function("tootstack-SecretsBootstrap", self.bootstrap_fn_target, bootstrap_env)
        self.lock_fn_target = LocalFunction("FirstBootLockFunction", ROOT / "functions/first_boot_lock", "app.handler", {})
        self.lock_fn = aws.create_function("tootstack-FirstBootLock", self.lock_fn_target,
                                           {"FIRST_BOOT_LOCK_PARAMETER": "/tootstack/first-boot/lock"})
        rotation_env = {"REDIS_SECRET_ARN": self.secrets["redis"], "REDIS_BACKEND": "acl", "REDIS_HOST": redis_server.host,
                        "REDIS_PORT": str(redis_server.port), "REDIS_TLS": "true", "REDIS_CA_FILE": redis_server.ca_file,
                        "CLUSTER_NAME": "tootstack", "SERVICE_NAMES": ",".join(SERVICES), "REDEPLOY_WAIT_SECONDS": "0"}
        self.backend = AclBackend(redis_server.admin_client, persist=False)
        self.rotation_fn = aws.create_function("tootstack-RedisRotation", rotation_handler(lambda: self.backend), rotation_env)
        self.mirror_calls = []
        mirror_arn = ""
        if mirror:
            mirror_arn = aws.create_function("tootstack-Mirror", lambda event, ctx: self.mirror_calls.append(event) or {"images": []})
        subs = {
            "MirrorFunctionArn": mirror_arn, "SecretsBootstrapFunctionArn": self.bootstrap_fn,
            "FirstBootLockFunctionArn": self.lock_fn,
            "RedisRotationFunctionArn": self.rotation_fn, "ClusterArn": self.cluster, "ToolboxTaskFamily": "tootstack-toolbox",
            "TaskSubnetA": self.subnets[0], "TaskSubnetB": self.subnets[1], "WorkerSecurityGroupId": self.sg,
            "MastodonImage": "ghcr.io/mastodon/mastodon:v4.5.2", "StreamingImage": "ghcr.io/mastodon/mastodon-streaming:v4.5.2",
        }
        for name, count in SERVICES.items():
            key = "".join(part.capitalize() for part in name.split("-"))
            subs[f"{key}ServiceName"], subs[f"{key}DesiredCount"] = name, str(count)
        self.state_machine = aws.create_state_machine_from_file(ROOT / "statemachines/first_boot.asl.json", "first-boot", subs)
        self.db_exit_code = 0
        aws.tasks.on("tootstack-toolbox", self.toolbox_task)

    def toolbox_task(self, run):
        """The Mastodon toolbox container: boots with the injected secrets (Rails connects to Redis at
        boot), then runs the command. Never prints a secret."""
        endpoint = Endpoint(run.environment["REDIS_HOST"], int(run.environment["REDIS_PORT"]), tls=True, ca_file=self.redis.ca_file)
        if not works(endpoint, Credential(run.secrets["REDIS_USER"], run.secrets["REDIS_PASSWORD"])):
            return TaskResult(exit_code=1, log_lines=["Redis::CommandError: WRONGPASS invalid username-password pair"])
        missing = [k for k in ("SECRET_KEY_BASE", "OTP_SECRET", "VAPID_PRIVATE_KEY", "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "DB_PASS") if not run.secrets.get(k)]
        if missing:
            return TaskResult(exit_code=1, log_lines=[f"missing {missing}"])
        return TaskResult(exit_code=self.db_exit_code, log_lines=["Database 'mastodon' prepared", f"command: {' '.join(run.command)}"])

    def secret_values(self):
        return secret_version_values(self.aws.client("secretsmanager"), self.secrets.values())

    def desired(self):
        ecs = self.aws.client("ecs")
        return {s["serviceName"]: s["desiredCount"] for s in ecs.describe_services(cluster="tootstack", services=list(SERVICES))["services"]}


@pytest.fixture
def stack(local_aws, redis_tls):
    return Stack(local_aws, redis_tls)


def _scan(stack, execution, extra=""):
    haystack = execution.raw + json.dumps([r.command for r in stack.aws.tasks.runs]) + json.dumps(stack.aws.tasks.log_events) + extra
    found = [v for v in stack.secret_values() if v in haystack]
    return found


def test_first_boot_end_to_end_and_rerun(stack, caplog, capsys):
    caplog.set_level(logging.INFO)
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert stack.desired() == SERVICES
    (run,) = stack.aws.tasks.runs
    assert run.command == ["bundle", "exec", "rails", "db:prepare"] and run.container_name == "toolbox"
    assert run.result.exit_code == 0                                   # it authenticated to Redis with injected secrets
    assert execution.output["redis"] == "user configured"
    assert "tootstack/app:SECRET_KEY_BASE" in execution.output["secrets_generated"]
    anonymous = Endpoint(stack.redis.host, stack.redis.port, tls=True, ca_file=stack.redis.ca_file).client()
    with pytest.raises(Exception, match="(?i)auth"):
        anonymous.ping()                                               # no unauthenticated access left
    values_after_first = sorted(stack.secret_values())

    again = stack.aws.run_state_machine(stack.state_machine, {})       # a re-run from the console
    assert again.status == "SUCCEEDED"
    assert again.output["secrets_generated"] == "none" and again.output["redis"] == "already configured"
    assert all(item["changed"] is False for item in again.output["services"])
    assert sorted(stack.secret_values()) == values_after_first           # nothing regenerated
    out = capsys.readouterr()
    assert _scan(stack, execution, caplog.text + out.out + out.err) == []
    assert _scan(stack, again) == []


def test_failed_db_setup_names_the_step_starts_nothing_and_rerun_resumes(stack):
    stack.db_exit_code = 1
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "FAILED"
    assert execution.error == "FirstBoot.DatabaseSetupFailed"
    assert "db:prepare did not exit 0" in execution.cause
    assert set(stack.desired().values()) == {0}                          # no service started before the DB exists
    stack.db_exit_code = 0
    resumed = stack.aws.run_state_machine(stack.state_machine, {})
    assert resumed.status == "SUCCEEDED"
    assert resumed.output["redis"] == "already configured"
    assert stack.desired() == SERVICES
    assert _scan(stack, execution) == [] and _scan(stack, resumed) == []


def test_redis_failure_names_the_step_and_runs_no_task(stack, monkeypatch):
    endpoint = Endpoint(stack.redis.host, stack.redis.port, tls=True, ca_file=stack.redis.ca_file)
    stack.backend = AclBackend(lambda: endpoint.client(Credential("rehearsal-admin", "not-the-admin-password")))
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "FAILED" and execution.error == "FirstBoot.RedisAuthFailed"
    assert "privileged Redis connection was refused" in execution.cause
    assert stack.aws.tasks.runs == [] and set(stack.desired().values()) == {0}
    assert _scan(stack, execution) == []


def test_mirror_step_runs_when_configured(local_aws, redis_tls):
    stack = Stack(local_aws, redis_tls, mirror=True)
    execution = local_aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert stack.mirror_calls == [{"images": [
        {"source": "ghcr.io/mastodon/mastodon:v4.5.2", "repository": "mastodon"},
        {"source": "ghcr.io/mastodon/mastodon-streaming:v4.5.2", "repository": "mastodon-streaming"}]}]


def test_mirror_step_skipped_when_not_configured(stack):
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    entered = [e["stateEnteredEventDetails"]["name"] for e in execution.history if "stateEnteredEventDetails" in e]
    assert "Mirror images" not in entered and "Set up Redis auth" in entered


def test_two_first_boots_at_once_run_db_prepare_once(stack):
    """A second execution started while the first runs `rails db:prepare` fails FirstBoot.AlreadyRunning
    before doing anything (no second db:prepare on the fresh database); the lock is released at the end,
    so a later re-run from the console works."""
    import threading
    import time

    sfn = stack.aws.client("stepfunctions")
    inside, proceed = threading.Event(), threading.Event()
    plain = stack.toolbox_task

    def slow_prepare(run):
        inside.set()
        proceed.wait(20)
        return plain(run)

    stack.aws.tasks.on("tootstack-toolbox", slow_prepare)
    first = sfn.start_execution(stateMachineArn=stack.state_machine, name="first", input="{}")["executionArn"]
    assert inside.wait(20)
    second = stack.aws.run_state_machine(stack.state_machine, {}, name="second")
    proceed.set()
    assert second.status == "FAILED" and second.error == "FirstBoot.AlreadyRunning", (second.error, second.cause)
    assert "first is running" in second.cause
    deadline = time.monotonic() + 30
    while sfn.describe_execution(executionArn=first)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sfn.describe_execution(executionArn=first)["status"] == "SUCCEEDED"
    assert [r.command for r in stack.aws.tasks.runs] == [["bundle", "exec", "rails", "db:prepare"]]
    stack.aws.tasks.on("tootstack-toolbox", plain)
    assert stack.aws.run_state_machine(stack.state_machine, {}).status == "SUCCEEDED"   # lock released


def _lock_action_fails(stack, action):
    """The lock function, but its `action` on the lock raises as an SSM outage would (AWS itself is
    what cannot fail here on demand)."""
    from tootstack.errors import DependencyUnavailable

    original = stack.lock_fn_target.entrypoint

    def handler(event, context):
        if event.get("Action") == action:
            raise DependencyUnavailable("cannot reach SSM")
        return original(event, context)

    stack.aws.update_route(stack.lock_fn, {}, handler=handler)


def test_a_lock_that_cannot_be_taken_is_not_reported_as_another_first_boot(stack):
    _lock_action_fails(stack, "lock")
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "FAILED" and execution.error == "FirstBoot.LockFailed", (execution.error, execution.cause)
    assert "cannot reach SSM" in execution.cause and stack.aws.tasks.runs == []


def test_a_release_that_fails_after_a_successful_first_boot_still_succeeds_and_the_next_run_recovers(stack):
    _lock_action_fails(stack, "unlock")
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert stack.desired() == SERVICES
    stack.aws.update_route(stack.lock_fn, {}, handler=stack.lock_fn_target)
    assert stack.aws.run_state_machine(stack.state_machine, {}).status == "SUCCEEDED"   # the stale lock is taken over


def test_a_stopped_first_boot_does_not_block_the_next(stack):
    import json as _json

    stack.aws.client("ssm").put_parameter(Name="/tootstack/first-boot/lock", Type="String", Value=_json.dumps({
        "execution": "gone", "execution_arn": stack.state_machine.replace(":stateMachine:", ":execution:") + ":gone"}))
    execution = stack.aws.run_state_machine(stack.state_machine, {})
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)

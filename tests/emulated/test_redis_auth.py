"""Redis auth setup and rotation against a real redis-server with TLS (ACL backend), Secrets Manager and
ECS in moto. Every interruption point is followed by a check that Mastodon still connects with the
credential its tasks hold (and with AWSCURRENT, which new tasks get), then a re-run that completes."""

import json
import logging
import uuid

import boto3
import pytest
import redis

from tootstack.errors import InvalidInput, TootstackError
from tootstack.redis_auth import entry
from tootstack.redis_auth.backends import AclBackend
from tootstack.redis_auth.credentials import AuthenticationFailed, Credential, Endpoint, verify, works
from tootstack.redis_auth.redeploy import EcsRedeployer, ServicesNotStable
from tootstack.redis_auth.rotation import CURRENT, PENDING, PREVIOUS, REDEPLOYED_TAG, STEPS, CurrentCredentialRefused, RedisRotation

REGION = "us-east-1"


class Crash(Exception):
    """Stands for the Lambda being killed (timeout, throttling, deploy) at that point."""


class Tasks(EcsRedeployer):
    """The real ECS redeployer against moto, plus what moto cannot model: the running Mastodon tasks
    read the secret when they (re)start, so after a redeploy they hold AWSCURRENT."""

    def __init__(self, sm, secret_arn, **kwargs):
        super().__init__(boto3.client("ecs", region_name=REGION), "mastodon", ["web", "sidekiq"], wait_seconds=0, poll_seconds=0, **kwargs)
        self._sm, self._secret = sm, secret_arn
        self.started_with = self._read()
        self.redeploys = 0

    def _read(self):
        doc = json.loads(self._sm.get_secret_value(SecretId=self._secret)["SecretString"])
        return Credential(doc["username"], doc["password"])

    def redeploy(self):
        super().redeploy()
        self.redeploys += 1
        self.started_with = self._read()


@pytest.fixture
def env(redis_tls, local_aws):
    if True:  # LocalAws: moto plus the harness's fixes (AWSCURRENT moves are what GetSecretValue returns)
        sm = boto3.client("secretsmanager", region_name=REGION)
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName="mastodon")
        td = ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "m", "memory": 512}])
        for name in ("web", "sidekiq"):
            ecs.create_service(cluster="mastodon", serviceName=name, taskDefinition=td["taskDefinition"]["taskDefinitionArn"], desiredCount=0)
            ecs.update_service(cluster="mastodon", service=name, desiredCount=2)  # moto: 2 running, rollout COMPLETED
        password = "initial" + uuid.uuid4().hex
        arn = sm.create_secret(Name="tootstack/redis", SecretString=json.dumps({"username": "mastodon", "password": password}))["ARN"]
        endpoint = Endpoint(redis_tls.host, redis_tls.port, tls=True, ca_file=redis_tls.ca_file)
        backend = AclBackend(redis_tls.admin_client, persist=False)  # the ACL SAVE / CONFIG REWRITE path runs in test_redis_handlers
        tasks = Tasks(sm, arn)
        rotation = RedisRotation.direct(sm, arn, backend, endpoint, redeployer=tasks)
        rotation.setup()
        yield type("Env", (), dict(sm=sm, arn=arn, endpoint=endpoint, backend=backend, tasks=tasks, rotation=rotation, server=redis_tls))


def _cred(env, **selector):
    doc = json.loads(env.sm.get_secret_value(SecretId=env.arn, **selector)["SecretString"])
    return Credential(doc["username"], doc["password"])


def _stages(env):
    return env.sm.describe_secret(SecretId=env.arn)["VersionIdsToStages"]


def _mastodon_connects(env, credential):
    """What a Mastodon task does at boot: AUTH as REDIS_USER/REDIS_PASSWORD over TLS, then PING."""
    return works(env.endpoint, credential)


def _rotate(env, token, steps=STEPS):
    for step in steps:
        env.rotation.run_step(step, token)


def _assert_rotated(env, token, old):
    stages = _stages(env)
    assert CURRENT in stages[token] and PENDING not in stages[token]
    assert not any(PENDING in labels for labels in stages.values())
    new = _cred(env)
    assert new.password != old.password
    assert env.tasks.started_with == new
    assert _mastodon_connects(env, new)
    assert not _mastodon_connects(env, old)                      # old password retired at the end
    assert env.backend.password_count("mastodon") == 1
    assert _cred(env, VersionStage=PREVIOUS) == old


# --- first boot -----------------------------------------------------------------------------------------

def test_setup_creates_the_user_and_closes_the_open_default(redis_tls, local_aws):
    if True:
        sm = boto3.client("secretsmanager", region_name=REGION)
        password = "setup" + uuid.uuid4().hex
        arn = sm.create_secret(Name="r", SecretString=json.dumps({"username": "mastodon", "password": password}))["ARN"]
        endpoint = Endpoint(redis_tls.host, redis_tls.port, ca_file=redis_tls.ca_file)
        rotation = RedisRotation.direct(sm, arn, AclBackend(redis_tls.admin_client), endpoint)
        assert redis_tls.client().ping() is True                   # a fresh cluster: open to anyone
        assert rotation.setup()["status"] == "user configured"
        verify(endpoint, Credential("mastodon", password))
        with pytest.raises(redis.exceptions.AuthenticationError):
            endpoint.client().ping()                               # default user switched off
        assert rotation.setup()["status"] == "already configured"  # re-run: nothing to do
        assert AclBackend(redis_tls.admin_client).password_count("mastodon") == 1


def test_setup_with_a_refused_admin_is_a_clear_error_and_changes_nothing(redis_tls, local_aws):
    if True:
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name="r", SecretString=json.dumps({"username": "mastodon", "password": "p" * 20}))["ARN"]
        endpoint = Endpoint(redis_tls.host, redis_tls.port, ca_file=redis_tls.ca_file)
        backend = AclBackend(lambda: endpoint.client(Credential("rehearsal-admin", "wrong-admin-password")))
        with pytest.raises(TootstackError, match="privileged Redis connection was refused"):
            RedisRotation.direct(sm, arn, backend, endpoint).setup()
        assert redis_tls.client().ping() is True                   # default untouched
        assert redis_tls.admin_client().execute_command("ACL", "GETUSER", "mastodon") is None


def test_tls_is_verified(redis_tls):
    # the server's certificate must chain to the CA we trust: with the system store it is refused
    endpoint = Endpoint(redis_tls.host, redis_tls.port, tls=True, ca_file=None)
    with pytest.raises(TootstackError, match="cannot reach Redis"):
        verify(endpoint, Credential("default", "x" * 16))


# --- rotation --------------------------------------------------------------------------------------------

def test_full_rotation(env):
    old = _cred(env)
    token = str(uuid.uuid4())
    _rotate(env, token)
    _assert_rotated(env, token, old)
    assert env.tasks.redeploys == 1
    tags = {t["Key"]: t["Value"] for t in env.sm.describe_secret(SecretId=env.arn)["Tags"]}
    assert tags[REDEPLOYED_TAG] == token
    # every step is idempotent after completion
    _rotate(env, token)
    _assert_rotated(env, token, old)
    assert env.tasks.redeploys == 1


def test_two_passwords_are_valid_between_set_and_finish(env):
    old = _cred(env)
    token = str(uuid.uuid4())
    _rotate(env, token, STEPS[:3])
    pending = _cred(env, VersionId=token, VersionStage=PENDING)
    assert _mastodon_connects(env, old) and _mastodon_connects(env, pending)
    assert env.backend.password_count("mastodon") == 2


def _crash_after(monkeypatch, obj, name, when=lambda *a, **k: True):
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            raise Crash(f"killed after {name}")
        return result

    monkeypatch.setattr(obj, name, wrapper)


def _crash_before(monkeypatch, obj, name):
    def wrapper(*args, **kwargs):
        raise Crash(f"killed before {name}")

    monkeypatch.setattr(obj, name, wrapper)


INTERRUPTIONS = {
    # step boundaries
    "after createSecret (pending stored, not applied)": None,
    "after setSecret (new password added to the user)": None,
    "after testSecret (both verified)": None,
    # inside setSecret / finishSecret
    "setSecret: ACL SETUSER applied, step not reported": lambda mp, env: _crash_after(mp, env.backend, "add_password"),
    "finishSecret: AWSCURRENT moved, AWSPENDING not yet removed": lambda mp, env: _crash_after(
        mp, env.sm, "update_secret_version_stage", when=lambda **k: k.get("VersionStage") == CURRENT),
    "finishSecret: stages moved, before the redeploy": lambda mp, env: _crash_before(mp, env.tasks, "redeploy"),
    "finishSecret: redeploy forced, not yet recorded": lambda mp, env: _crash_after(mp, env.tasks, "redeploy"),
    "finishSecret: services still rolling out (ServicesNotStable)": lambda mp, env: mp.setattr(
        env.tasks, "unstable", lambda: ["web: 1/2 running"]),
    "finishSecret: old password removed, before the final check": lambda mp, env: _crash_after(mp, env.backend, "retire_others"),
}


@pytest.mark.parametrize("point", list(INTERRUPTIONS))
def test_interruption_leaves_mastodon_connected_and_rerun_completes(env, monkeypatch, point):
    old = _cred(env)
    token = str(uuid.uuid4())
    boundary = {"after createSecret (pending stored, not applied)": 1, "after setSecret (new password added to the user)": 2,
                "after testSecret (both verified)": 3}.get(point)
    with monkeypatch.context() as mp:
        if boundary:
            _rotate(env, token, STEPS[:boundary])
        else:
            INTERRUPTIONS[point](mp, env)
            with pytest.raises((Crash, ServicesNotStable)):
                _rotate(env, token)
    # no lockout: the running tasks' credential and AWSCURRENT (what a task starting now gets) both work
    assert _mastodon_connects(env, env.tasks.started_with)
    assert _mastodon_connects(env, _cred(env))
    # re-run of the same rotation (Secrets Manager retries, or the operator re-invokes) completes
    _rotate(env, token)
    _assert_rotated(env, token, old)


def test_abandoned_rotation_is_superseded_by_a_new_one(env):
    old = _cred(env)
    first = str(uuid.uuid4())
    _rotate(env, first, STEPS[:2])                                 # abandoned with AWSPENDING set and applied
    second = str(uuid.uuid4())
    _rotate(env, second)
    _assert_rotated(env, second, old)
    assert not _mastodon_connects(env, _cred(env, VersionId=first))  # the abandoned password is gone too


def test_wrong_current_password_is_a_clear_error_and_changes_nothing(env):
    real = _cred(env)
    env.sm.put_secret_value(SecretId=env.arn, SecretString=json.dumps({"username": "mastodon", "password": "w" * 24}))
    token = str(uuid.uuid4())
    env.rotation.run_step("createSecret", token)
    acl_before = env.server.admin_client().execute_command("ACL", "GETUSER", "mastodon")
    with pytest.raises(CurrentCredentialRefused, match="AWSCURRENT does not match the server: nothing was changed") as failure:
        env.rotation.run_step("setSecret", token)
    assert "w" * 24 not in str(failure.value)
    assert env.server.admin_client().execute_command("ACL", "GETUSER", "mastodon") == acl_before
    assert _mastodon_connects(env, real)
    assert not _mastodon_connects(env, _cred(env, VersionId=token, VersionStage=PENDING))
    with pytest.raises(AuthenticationFailed):
        env.rotation.run_step("testSecret", token)


def test_bad_events_are_refused(env):
    with pytest.raises(InvalidInput, match="unknown rotation step"):
        env.rotation.run_step("dropSecret", str(uuid.uuid4()))
    with pytest.raises(InvalidInput, match="run createSecret first"):
        env.rotation.run_step("setSecret", str(uuid.uuid4()))
    other = env.sm.create_secret(Name="other", SecretString="{}")["ARN"]
    with pytest.raises(InvalidInput, match="this function rotates"):
        entry.handle({"Step": "createSecret", "SecretId": other, "ClientRequestToken": str(uuid.uuid4())}, env.rotation)
    with pytest.raises(InvalidInput, match="expected a rotation event"):
        entry.handle({"hello": 1}, env.rotation)


def test_nothing_secret_in_logs_results_or_errors(env, monkeypatch, caplog, capsys):
    caplog.set_level(logging.INFO)
    results, errors = [], []
    token = str(uuid.uuid4())
    with monkeypatch.context() as mp:
        mp.setattr(env.tasks, "unstable", lambda: ["web: 1/2 running"])
        for step in STEPS:
            try:
                results.append(env.rotation.run_step(step, token))
            except TootstackError as exc:
                errors.append(str(exc))
    for step in STEPS:
        results.append(env.rotation.run_step(step, token))
    results.append(env.rotation.setup())
    versions = env.sm.list_secret_version_ids(SecretId=env.arn)["Versions"]
    passwords = {_cred(env, VersionId=v["VersionId"]).password for v in versions}
    assert len(passwords) == 2 and errors
    out = capsys.readouterr()
    haystack = json.dumps(results) + json.dumps(errors) + caplog.text + out.out + out.err
    assert [p for p in passwords if p in haystack] == []


def test_credential_repr_hides_the_password():
    cred = Credential("mastodon", "s3cr3t-value-0123456789")
    assert "s3cr3t" not in repr(cred) and "s3cr3t" not in str(cred) and "s3cr3t" not in f"{cred}"


def test_probe_answers_without_the_password(redis_tls):
    env_vars = {"REDIS_HOST": redis_tls.host, "REDIS_PORT": str(redis_tls.port), "REDIS_TLS": "true", "REDIS_CA_FILE": redis_tls.ca_file}
    refused = entry.probe({"username": "mastodon", "password": "nope-nope-nope-nope"}, env_vars)
    assert refused["ok"] is False and refused["error"] == "AuthenticationFailed"
    assert "nope-nope" not in json.dumps(refused)
    redis_tls.admin_client().execute_command("ACL", "SETUSER", "mastodon", "on", ">right-right-right-right", "~*", "+@all")
    assert entry.probe({"username": "mastodon", "password": "right-right-right-right"}, env_vars) == {"ok": True}
    assert works(Endpoint(redis_tls.host, redis_tls.port, ca_file=redis_tls.ca_file), Credential("mastodon", "right-right-right-right"))
    bad = entry.probe({"username": "mastodon"}, env_vars)
    assert bad["ok"] is False and bad["error"] == "InvalidInput"


@pytest.mark.parametrize("crash_after", ["ensure_user", "lock_default_user"])
def test_interrupted_setup_leaves_the_user_working_and_rerun_completes(redis_tls, local_aws, monkeypatch, crash_after):
    sm = boto3.client("secretsmanager", region_name=REGION)
    password = "setup" + uuid.uuid4().hex
    arn = sm.create_secret(Name="r", SecretString=json.dumps({"username": "mastodon", "password": password}))["ARN"]
    endpoint = Endpoint(redis_tls.host, redis_tls.port, ca_file=redis_tls.ca_file)
    backend = AclBackend(redis_tls.admin_client, persist=False)
    rotation = RedisRotation.direct(sm, arn, backend, endpoint)
    with monkeypatch.context() as mp:
        _crash_after(mp, backend, crash_after)
        with pytest.raises(Crash):
            rotation.setup()
    assert works(endpoint, Credential("mastodon", password))          # what first boot hands the tasks works
    assert rotation.setup()["status"] == "already configured"
    with pytest.raises(redis.exceptions.AuthenticationError):
        endpoint.client().ping()                                      # and the re-run closed the default user


@pytest.mark.parametrize("boundary", [1, 2, 3])
def test_operator_resume_finishes_an_interrupted_rotation(env, boundary):
    old = _cred(env)
    token = str(uuid.uuid4())
    _rotate(env, token, STEPS[:boundary])
    assert entry.handle({"Action": "resume"}, env.rotation)["status"] == f"rotation {token} finished"
    _assert_rotated(env, token, old)
    assert entry.handle({"Action": "resume"}, env.rotation)["status"] == "nothing to resume"


def test_operator_resume_completes_an_unconfirmed_redeploy(env, monkeypatch):
    old = _cred(env)
    token = str(uuid.uuid4())
    with monkeypatch.context() as mp:
        mp.setattr(env.tasks, "unstable", lambda: ["web: 1/2 running"])
        with pytest.raises(ServicesNotStable):
            _rotate(env, token)
    assert _mastodon_connects(env, old)
    assert entry.handle({"Action": "resume"}, env.rotation)["status"] == f"rotation {token} completed"
    _assert_rotated(env, token, old)

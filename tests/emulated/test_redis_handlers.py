"""The Lambda handlers themselves (functions/redis_rotation, functions/redis_probe, the first-boot trigger
of functions/secrets_bootstrap) through their sample events, configured only by environment variables
as in Lambda: rotation function -> probe function (Lambda API, moto) -> real redis-server with TLS."""

import json
import logging
import uuid

import pytest

from tootstack.first_boot import execution_name
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.redis_auth.credentials import Credential, Endpoint, works

ROOT = project_root()


def _fn(name):
    return LocalFunction(name, ROOT / f"functions/{name}", "app.handler", {}).entrypoint


@pytest.fixture
def deployed(local_aws, redis_tls):
    """The rotation function with the ACL backend (self-hosted Redis: admin credential from a secret) and
    verification through the probe function, as template.yaml wires the probe."""
    sm = local_aws.client("secretsmanager")
    admin_password = "admin" + uuid.uuid4().hex
    redis_tls.admin_client().execute_command("ACL", "SETUSER", "ops", "on", f">{admin_password}", "~*", "&*", "+@all")
    admin_arn = sm.create_secret(Name="redis-admin", SecretString=json.dumps({"username": "ops", "password": admin_password}))["ARN"]
    redis_arn = sm.create_secret(Name="tootstack/redis", SecretString=json.dumps({"username": "mastodon", "password": "first" + uuid.uuid4().hex}))["ARN"]
    where = {"REDIS_HOST": redis_tls.host, "REDIS_PORT": str(redis_tls.port), "REDIS_TLS": "true", "REDIS_CA_FILE": redis_tls.ca_file}
    local_aws.create_function("tootstack-RedisProbe", LocalFunction("RedisProbeFunction", ROOT / "functions/redis_probe", "app.handler", {}), where)
    rotation = local_aws.create_function("tootstack-RedisRotation", LocalFunction("RedisRotationFunction", ROOT / "functions/redis_rotation", "app.handler", {}), {
        **where, "REDIS_SECRET_ARN": redis_arn, "REDIS_BACKEND": "acl", "REDIS_ADMIN_SECRET_ARN": admin_arn,
        "REDIS_PROBE_FUNCTION": "tootstack-RedisProbe"})
    endpoint = Endpoint(redis_tls.host, redis_tls.port, ca_file=redis_tls.ca_file)
    return local_aws, sm, redis_arn, rotation, endpoint, admin_password


def test_setup_and_rotation_through_the_handlers_and_sample_event(deployed, caplog, capsys):
    aws, sm, arn, rotation, endpoint, admin_password = deployed
    caplog.set_level(logging.INFO)
    assert aws.invoke("tootstack-RedisRotation", {"Action": "setup"})["status"] == "user configured"
    old = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    sample = json.loads((ROOT / "events/redis_rotation.json").read_text())
    token = str(uuid.uuid4())
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        event = dict(sample, Step=step, SecretId=arn, ClientRequestToken=token)
        assert aws.invoke("tootstack-RedisRotation", event)["step"] == step
    new = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    assert works(endpoint, Credential("mastodon", new["password"]))
    assert not works(endpoint, Credential("mastodon", old["password"]))
    out = capsys.readouterr()
    haystack = caplog.text + out.out + out.err
    assert old["password"] not in haystack and new["password"] not in haystack and admin_password not in haystack


def test_rotation_through_secrets_manager_rotate_secret(deployed):
    aws, sm, arn, rotation, endpoint, _ = deployed
    aws.invoke("tootstack-RedisRotation", {"Action": "setup"})
    old = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    sm.rotate_secret(SecretId=arn, RotationLambdaARN=rotation, RotationRules={"AutomaticallyAfterDays": 30})
    new = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    assert new["password"] != old["password"]
    assert works(endpoint, Credential("mastodon", new["password"])) and not works(endpoint, Credential("mastodon", old["password"]))


def test_rotation_before_setup_fails_clearly_and_changes_nothing(deployed):
    aws, sm, arn, rotation, endpoint, _ = deployed
    token = str(uuid.uuid4())
    aws.invoke("tootstack-RedisRotation", {"Step": "createSecret", "SecretId": arn, "ClientRequestToken": token})
    with pytest.raises(Exception, match="CurrentCredentialRefused.*nothing was changed"):
        aws.invoke("tootstack-RedisRotation", {"Step": "setSecret", "SecretId": arn, "ClientRequestToken": token})
    assert endpoint.client().ping() is True        # still a fresh, open server: nothing was applied


def test_probe_handler_with_its_sample_event(redis_tls, monkeypatch):
    for key, value in {"REDIS_HOST": redis_tls.host, "REDIS_PORT": str(redis_tls.port), "REDIS_CA_FILE": redis_tls.ca_file}.items():
        monkeypatch.setenv(key, value)
    event = json.loads((ROOT / "events/redis_probe.json").read_text())
    answer = _fn("redis_probe")(event, type("C", (), {"function_name": "p", "memory_limit_in_mb": 128, "invoked_function_arn": "arn", "aws_request_id": "r"})())
    assert answer["ok"] is False and answer["error"] == "AuthenticationFailed"
    assert event["password"] not in json.dumps(answer)


def test_first_boot_start_runs_once_on_create_only(local_aws, monkeypatch):
    from tests.emulated.test_secrets_bootstrap import _Context

    sent = []
    monkeypatch.setattr("tootstack.cfn_custom.urllib.request.urlopen", lambda req, timeout: sent.append(json.loads(req.data)) or _Ok())
    arn = local_aws.create_state_machine("first-boot", {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    handler = _fn("secrets_bootstrap")
    stack_id = "arn:aws:cloudformation:us-east-1:123456789012:stack/tootstack/abc"
    base = {"ResponseURL": "https://example.invalid/r", "StackId": stack_id, "RequestId": "1", "LogicalResourceId": "FirstBootStart",
            "ResourceType": "Custom::FirstBootStart", "ResourceProperties": {"StartStateMachineArn": arn}}
    handler(dict(base, RequestType="Create"), _Context())
    handler(dict(base, RequestType="Create"), _Context())                    # CloudFormation retried the Create
    handler(dict(base, RequestType="Update", PhysicalResourceId="x"), _Context())
    executions = local_aws.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in executions] == [execution_name(stack_id)]
    assert [r["Status"] for r in sent] == ["SUCCESS"] * 3


class _Ok:
    def read(self):
        return b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

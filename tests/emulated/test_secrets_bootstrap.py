"""Secrets bootstrap: formats Mastodon accepts, generate-once semantics, the custom resource handler
through its sample event, and a scan of everything captured for the generated values."""

import base64
import json
import logging

import boto3
import pytest
from moto import mock_aws

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.secrets import generate
from tootstack.secrets.bootstrap import BootstrapConfig, run_bootstrap
from tootstack_dev.local.aws import LambdaContext

ROOT = project_root()
REGION = "us-east-1"


# --- generators -----------------------------------------------------------------------------------------

def test_ses_smtp_password_matches_the_published_vector():
    # AWS SDK for PHP's SesClientTest (generateSmtpPasswordV4), made with the sample code of the SES guide.
    assert generate.ses_smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-2") == \
        "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS"
    assert generate.ses_smtp_password("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1") != \
        "BMPPgbAHoFVbze1Ud0oA5uNdXRwUXUZ+qOwphGJbl/cS"  # regional


def test_ses_smtp_password_rejects_empty_input():
    with pytest.raises(InvalidInput):
        generate.ses_smtp_password("", "us-east-1")


def test_hex_secrets_are_64_random_bytes():
    a, b = generate.hex_secret(), generate.hex_secret()
    assert len(a) == 128 and a != b
    assert len(bytes.fromhex(a)) == 64


def test_vapid_pair_is_p256_in_mastodons_urlsafe_encoding():
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = generate.vapid_keypair()
    # web-push gem: Base64.urlsafe_encode64 (padded) of the raw scalar and the uncompressed point
    assert len(private) == 44 and private.endswith("=") and "+" not in private and "/" not in private
    assert len(public) == 88 and public.endswith("=")
    raw_public = base64.urlsafe_b64decode(public)
    assert len(raw_public) == 65 and raw_public[0] == 4
    # the public key round-trips through a P-256 point and belongs to the private key
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_public)
    key = ec.derive_private_key(int.from_bytes(base64.urlsafe_b64decode(private), "big"), ec.SECP256R1())
    assert key.public_key().public_numbers() == point.public_numbers()
    generate.check_vapid_pair(private, public)


def test_mismatched_vapid_pair_is_rejected():
    private, _ = generate.vapid_keypair()
    _, other_public = generate.vapid_keypair()
    with pytest.raises(InvalidInput, match="does not belong"):
        generate.check_vapid_pair(private, other_public)
    with pytest.raises(InvalidInput, match="not a urlsafe-base64"):
        generate.check_vapid_pair(private, "bm90IGEga2V5")


def test_app_secrets_have_every_key_mastodon_needs():
    values = generate.missing_app_secrets({})
    assert set(values) == set(generate.APP_SECRET_KEYS)
    for key in ("ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
                "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT"):
        assert len(values[key]) == 32 and values[key].isalnum()
    assert len(set(values.values())) == len(values)


def test_half_a_vapid_pair_is_an_error_not_a_regeneration():
    with pytest.raises(InvalidInput, match="one half"):
        generate.missing_app_secrets({"VAPID_PUBLIC_KEY": "x"})


# --- bootstrap against moto Secrets Manager/IAM ---------------------------------------------------------

@pytest.fixture
def aws():
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        arns = {
            name: sm.create_secret(Name=f"tootstack/{name}", SecretString="{}")["ARN"]
            for name in ("app", "database", "redis", "smtp")
        }
        iam.create_user(UserName="tootstack-smtp")
        yield sm, iam, arns


def _config(arns):
    return BootstrapConfig(arns["app"], arns["database"], arns["redis"], arns["smtp"], "tootstack-smtp", REGION)


def _value(sm, arn):
    return json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])


def test_bootstrap_generates_everything_once(aws):
    sm, iam, arns = aws
    result = run_bootstrap(_config(arns), sm, iam)
    app, db, redis_, smtp = (_value(sm, arns[n]) for n in ("app", "database", "redis", "smtp"))
    assert set(app) == set(generate.APP_SECRET_KEYS)
    assert db["username"] == "mastodon" and len(db["password"]) == 40 and db["password"].isalnum()
    assert redis_["username"] == "mastodon" and 16 <= len(redis_["password"]) <= 128
    keys = iam.list_access_keys(UserName="tootstack-smtp")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [smtp["username"]]
    assert smtp["password"].startswith("B")  # version byte 0x04, base64
    assert "tootstack/app:SECRET_KEY_BASE" in result.summary()["Generated"]

    before = {n: _value(sm, a) for n, a in arns.items()}
    versions = {n: sm.describe_secret(SecretId=a)["VersionIdsToStages"] for n, a in arns.items()}
    again = run_bootstrap(_config(arns), sm, iam)
    assert again.summary()["Generated"] == "none"
    assert {n: _value(sm, a) for n, a in arns.items()} == before
    assert {n: sm.describe_secret(SecretId=a)["VersionIdsToStages"] for n, a in arns.items()} == versions
    assert len(iam.list_access_keys(UserName="tootstack-smtp")["AccessKeyMetadata"]) == 1


def test_existing_values_are_never_overwritten_missing_ones_filled(aws):
    sm, iam, arns = aws
    private, public = generate.vapid_keypair()
    sm.put_secret_value(SecretId=arns["app"], SecretString=json.dumps(
        {"SECRET_KEY_BASE": "operator-kept-value", "VAPID_PRIVATE_KEY": private, "VAPID_PUBLIC_KEY": public, "EXTRA": "x"}))
    sm.put_secret_value(SecretId=arns["database"], SecretString=json.dumps({"username": "legacy", "password": "kept-db-password"}))
    run_bootstrap(_config(arns), sm, iam)
    app = _value(sm, arns["app"])
    assert app["SECRET_KEY_BASE"] == "operator-kept-value"
    assert (app["VAPID_PRIVATE_KEY"], app["VAPID_PUBLIC_KEY"]) == (private, public)
    assert app["EXTRA"] == "x" and len(app["OTP_SECRET"]) == 128
    assert _value(sm, arns["database"]) == {"username": "legacy", "password": "kept-db-password"}


def test_non_json_secret_is_a_clear_error_and_nothing_changes(aws):
    sm, iam, arns = aws
    sm.put_secret_value(SecretId=arns["redis"], SecretString="plain-text")
    with pytest.raises(InvalidInput, match="tootstack/redis.* not a JSON object"):
        run_bootstrap(_config(arns), sm, iam)
    assert sm.get_secret_value(SecretId=arns["redis"])["SecretString"] == "plain-text"


def test_orphaned_smtp_access_key_is_replaced_not_accumulated(aws):
    sm, iam, arns = aws
    orphan = iam.create_access_key(UserName="tootstack-smtp")["AccessKey"]["AccessKeyId"]  # an earlier run died here
    run_bootstrap(_config(arns), sm, iam)
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName="tootstack-smtp")["AccessKeyMetadata"]]
    assert orphan not in keys and keys == [_value(sm, arns["smtp"])["username"]]


def test_template_placeholder_smtp_secret_gets_a_real_credential(aws):
    sm, iam, arns = aws
    # template.yaml's SmtpSecret: GenerateSecretString {"username": ""} + a generated password placeholder
    sm.put_secret_value(SecretId=arns["smtp"], SecretString=json.dumps({"username": "", "password": "placeholder0123456789"}))
    run_bootstrap(_config(arns), sm, iam)
    smtp = _value(sm, arns["smtp"])
    assert smtp["username"].startswith("AKIA") or smtp["username"]
    assert smtp["password"] != "placeholder0123456789" and len(smtp["password"]) == 44
    assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName="tootstack-smtp")["AccessKeyMetadata"]] == [smtp["username"]]


def test_missing_smtp_user_is_invalid_input(aws):
    sm, iam, arns = aws
    config = _config(arns)
    config.smtp_user_name = "nobody"
    with pytest.raises(InvalidInput, match="nobody does not exist"):
        run_bootstrap(config, sm, iam)


# --- the custom resource handler, through events/secrets_bootstrap.json ---------------------------------

def _Context():
    return LambdaContext("secrets-bootstrap")




def _event(arns, url, request_type="Create"):
    event = json.loads((ROOT / "events/secrets_bootstrap.json").read_text())
    props = event["ResourceProperties"]
    props.update(AppSecretArn=arns["app"], DatabaseSecretArn=arns["database"], RedisSecretArn=arns["redis"],
                 SmtpSecretArn=arns["smtp"])
    event.update(RequestType=request_type, ResponseURL=url)
    if request_type != "Create":
        event["PhysicalResourceId"] = "tootstack-secrets-bootstrap"
    return event


def _all_secret_values(sm, arns):
    values = []
    for arn in arns.values():
        for value in _value(sm, arn).values():
            if isinstance(value, str) and len(value) >= 8:
                values.append(value)
    return values


def test_custom_resource_create_update_delete_leaks_nothing(aws, response_url, monkeypatch, capsys, caplog):
    sm, iam, arns = aws
    url, received = response_url
    monkeypatch.setenv("STACK_NAME", "tootstack")
    caplog.set_level(logging.INFO)  # production level; botocore DEBUG would echo request bodies
    handler = LocalFunction("SecretsBootstrapFunction", ROOT / "functions/secrets_bootstrap", "app.handler", {}).entrypoint

    handler(_event(arns, url, "Create"), _Context())
    first = {n: _value(sm, a) for n, a in arns.items()}
    handler(_event(arns, url, "Update"), _Context())
    handler(_event(arns, url, "Delete"), _Context())
    assert [r["Status"] for r in received] == ["SUCCESS"] * 3
    assert {r["PhysicalResourceId"] for r in received} == {"tootstack-secrets-bootstrap"}
    assert all(r["NoEcho"] for r in received)
    assert {n: _value(sm, a) for n, a in arns.items()} == first           # update regenerated nothing
    assert sm.describe_secret(SecretId=arns["app"]).get("DeletedDate") is None  # delete retained it

    captured = capsys.readouterr()
    haystack = json.dumps(received) + captured.out + captured.err + caplog.text
    secrets_ = _all_secret_values(sm, arns)
    assert len(secrets_) >= 12
    leaked = [s for s in secrets_ if s in haystack]
    assert leaked == []


def test_custom_resource_reports_failure_without_values(aws, response_url, monkeypatch):
    sm, iam, arns = aws
    url, received = response_url
    sm.put_secret_value(SecretId=arns["app"], SecretString=json.dumps({"VAPID_PUBLIC_KEY": "only-half-of-a-pair"}))
    handler = LocalFunction("SecretsBootstrapFunction", ROOT / "functions/secrets_bootstrap", "app.handler", {}).entrypoint
    handler(_event(arns, url, "Create"), _Context())
    assert received[-1]["Status"] == "FAILED"
    assert "InvalidInput" in received[-1]["Reason"] and "one half of the VAPID key pair" in received[-1]["Reason"]
    assert "only-half-of-a-pair" not in json.dumps(received)
    # nothing else was written either: the database secret is untouched
    assert _value(sm, arns["database"]) == {}

"""The one-off and create-admin pieces that need moto or a process: secret values read back from Secrets
Manager (moto) for redaction, the admin script's own guards (run with ruby against the stand-in of Mastodon's
models), the sample events of both functions, and idempotent retries. The pure validation, allow-list,
redaction and task-summary tests are in tests/unit/test_oneoff_units.py."""

import json
import os
import shutil
import subprocess

import pytest

from tests.fixtures.oneoff import FAKE_MASTODON, ROOT, client
from tests.unit.test_oneoff_units import GOOD, SCRIPT
from tootstack.oneoff import admin, redact


def test_stack_secret_values_reads_listed_and_prefixed_secrets(local_aws):
    sm = client("secretsmanager")
    listed = sm.create_secret(Name="other/db", SecretString=json.dumps({"password": "listed-secret-1"}))["ARN"]
    sm.create_secret(Name="stack/admin/alice", SecretString="prefixed-secret-2")
    sm.create_secret(Name="unrelated/x", SecretString="unrelated-secret-3")
    assert redact.stack_secret_values(sm, [listed], "stack/") == {"listed-secret-1", "prefixed-secret-2"}


def test_secrets_found_by_listing_are_read_only_under_the_labels_listsecrets_reported(local_aws, monkeypatch):
    """ListSecrets returns each secret's SecretVersionsToStages
    (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_ListSecrets.html, SecretListEntry): a
    listed secret is read once per label it has, not under all three standard labels (two of which fail for a
    secret that was never rotated or reset); a secret passed directly is still tried under all three."""
    sm = client("secretsmanager")
    direct = sm.create_secret(Name="other/db", SecretString="direct-secret-1")["ARN"]
    for n in range(5):
        sm.create_secret(Name=f"stack/admin/user{n}", SecretString=f"prefixed-secret-{n}")
    reads = []
    get = sm.get_secret_value
    monkeypatch.setattr(sm, "get_secret_value", lambda **kwargs: reads.append(kwargs) or get(**kwargs))

    values = redact.stack_secret_values(sm, [direct], "stack/")

    assert values == {"direct-secret-1"} | {f"prefixed-secret-{n}" for n in range(5)}
    assert sorted(r["VersionStage"] for r in reads if r["SecretId"] == direct) == sorted(redact.STAGES)
    assert [r["VersionStage"] for r in reads if r["SecretId"] != direct] == ["AWSCURRENT"] * 5


needs_ruby = pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed (make setup installs it)")


PASSWORD = "Zx9" * 8


def run_script(tmp_path, **env):
    base = {"PATH": os.environ["PATH"], "FAKE_MASTODON_DB": str(tmp_path / "db.json"),
            "ADMIN_USERNAME": "alice", "ADMIN_EMAIL": "alice@example.org", "ADMIN_ROLE": "Owner",
            "ADMIN_RESET_PASSWORD": "false", "ADMIN_REQUEST": "req-1", "ADMIN_PASSWORD": PASSWORD,
            "ADMIN_PENDING_USERNAME": "alice", "ADMIN_PENDING_REQUEST": "req-1"}
    base.update(env)
    proc = subprocess.run(["ruby", "-r", str(FAKE_MASTODON), "-e", SCRIPT], env=base, capture_output=True, text=True, timeout=30)
    assert PASSWORD not in proc.stdout + proc.stderr
    return proc


@needs_ruby
@pytest.mark.parametrize("env, code, text", [
    ({}, 0, "created @alice as Owner"),
    ({"ADMIN_USERNAME": "bad name"}, 2, "refused: invalid"),
    ({"ADMIN_ROLE": "Root"}, 2, "refused: invalid"),
    ({"ADMIN_PENDING_REQUEST": "req-2"}, 3, "another request"),
    ({"ADMIN_PENDING_USERNAME": "bob"}, 3, "another request"),
    ({"ADMIN_REQUEST": "", "ADMIN_PENDING_REQUEST": ""}, 3, "another request"),
    ({"ADMIN_PASSWORD": "short"}, 2, "no usable password"),
])
def test_script_guards(tmp_path, env, code, text):
    proc = run_script(tmp_path, **env)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert text in proc.stdout


@needs_ruby
def test_script_exceptions_never_print_the_password(tmp_path):
    proc = run_script(tmp_path, FAKE_MASTODON_FAIL="PG::Error: INSERT ... password=%PASSWORD%")
    assert proc.returncode == 1
    assert "failed: RuntimeError: PG::Error: INSERT ... password=[redacted]" in proc.stdout


def test_sample_events_run_through_the_handlers(local_aws, monkeypatch):
    from tootstack_dev.local.template import LocalFunction

    sm = client("secretsmanager")
    pending = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(admin.PENDING_PLACEHOLDER))["ARN"]
    monkeypatch.setenv("STACK_NAME", "s")
    monkeypatch.setenv("ADMIN_PENDING_SECRET_ARN", pending)
    create = LocalFunction("SampleCreateAdmin", ROOT / "functions/create_admin", "app.handler", {}).entrypoint
    oneoff = LocalFunction("SampleRunOneOff", ROOT / "functions/run_oneoff", "app.handler", {}).entrypoint
    from tootstack_dev.local.aws import LambdaContext

    prepared = create(json.loads((ROOT / "events/create_admin.json").read_text()), LambdaContext("create-admin"))
    assert prepared["username"] == "alice" and prepared["secret_arn"].split(":secret:")[1].startswith("s/admin/alice-")
    password = sm.get_secret_value(SecretId=prepared["secret_arn"])["SecretString"]
    assert password not in json.dumps(prepared)
    assert json.loads(sm.get_secret_value(SecretId=pending)["SecretString"])["password"] == password
    validated = oneoff(json.loads((ROOT / "events/run_oneoff.json").read_text()), LambdaContext("run-oneoff"))
    assert validated["command"] == ["bin/tootctl", "media", "usage"]


def test_prepare_and_finish_retries_are_idempotent(local_aws):
    sm = client("secretsmanager")
    pending = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(admin.PENDING_PLACEHOLDER))["ARN"]
    first = admin.prepare(sm, "s", pending, GOOD, "exec-1", SCRIPT)
    retry = admin.prepare(sm, "s", pending, GOOD, "exec-1", SCRIPT)  # Lambda retried after success
    assert first["secret_arn"] == retry["secret_arn"] and first["secret_created"] and not retry["secret_created"]
    created_password = sm.get_secret_value(SecretId=first["secret_arn"])["SecretString"]
    assert json.loads(sm.get_secret_value(SecretId=pending)["SecretString"])["password"] == created_password
    admin.finish(sm, pending, first, "created")

    reset = dict(GOOD, reset_password=True)
    staged = admin.prepare(sm, "s", pending, reset, "exec-2", SCRIPT)
    staged_password = json.loads(sm.get_secret_value(SecretId=pending)["SecretString"])["password"]
    assert admin.prepare(sm, "s", pending, reset, "exec-2", SCRIPT) == staged  # the retry keeps what it staged
    # Staged, not promoted: the secret still holds the account's password until the task reports the reset.
    assert sm.get_secret_value(SecretId=first["secret_arn"])["SecretString"] == created_password != staged_password
    assert sm.get_secret_value(SecretId=first["secret_arn"], VersionStage="AWSPENDING")["SecretString"] == staged_password
    assert admin.finish(sm, pending, staged, "password_reset")["status"] == "password_reset"
    assert admin.finish(sm, pending, staged, "password_reset")["status"] == "password_reset"  # retried
    assert sm.get_secret_value(SecretId=first["secret_arn"])["SecretString"] == staged_password

    prepared = dict(admin.prepare(sm, "s", pending, GOOD, "exec-3", SCRIPT), secret_created=True)
    result = admin.finish(sm, pending, prepared, "existing")
    again = admin.finish(sm, pending, prepared, "existing")  # retried after it deleted the fresh secret
    assert result["pending_secret_cleared"] and not again["pending_secret_cleared"]
    assert "password_secret_arn" not in again
    assert json.loads(sm.get_secret_value(SecretId=pending)["SecretString"]) == admin.PENDING_PLACEHOLDER


def test_redaction_covers_pending_and_previous_versions(local_aws):
    sm = client("secretsmanager")
    arn = sm.create_secret(Name="stack/database", SecretString=json.dumps({"password": "current-pass-1111"}))["ARN"]
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "previous-pass-2222"}))
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "current-pass-3333"}))
    sm.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "pending-pass-4444"}),
                        VersionStages=["AWSPENDING"])
    admin = sm.create_secret(Name="stack/admin/alice", SecretString="alice-current-5555")["ARN"]
    sm.put_secret_value(SecretId=admin, SecretString="alice-staged-reset-6666", VersionStages=["AWSPENDING"])

    values = redact.stack_secret_values(sm, [arn], "stack/")

    assert {"current-pass-3333", "previous-pass-2222", "pending-pass-4444", "alice-current-5555",
            "alice-staged-reset-6666"} <= values
    lines = ["connecting with previous-pass-2222", "staged alice-staged-reset-6666", "media usage: 3 GB"]
    assert redact.withhold(lines, values) == [redact.WITHHELD, redact.WITHHELD, "media usage: 3 GB"]

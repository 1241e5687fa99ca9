"""Validation (hypothesis-generated bad inputs), the allow-list, redaction, task summaries, the admin
script's own guards (run with ruby), and the sample events of both functions."""

import json
import os
import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tootstack.errors import InvalidInput
from tootstack.oneoff import admin, commands, redact, tasks
from tootstack.oneoff.admin import EMAIL_RE, ROLES, USERNAME_RE, validate_admin_request

from tests.fixtures.oneoff import FAKE_MASTODON, ROOT, client

SCRIPT = (ROOT / "functions/create_admin/create_admin.rb").read_text()
GOOD = {"username": "alice", "email": "alice@example.org", "role": "Owner"}
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class RecordingSecretsManager:
    """A Secrets Manager client that records calls: bad input must cause none."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls.append(name)
            raise AssertionError(f"unexpected Secrets Manager call {name}")

        return call


def assert_refused(data, field):
    sm = RecordingSecretsManager()
    with pytest.raises(InvalidInput) as caught:
        admin.prepare(sm, "stack", "pending-arn", data, "request-1", SCRIPT)
    assert sm.calls == []
    assert "invalid create-admin input" in str(caught.value) or "JSON object" in str(caught.value)
    if field:
        assert field in str(caught.value)
    return str(caught.value)


# --- create-admin input ---------------------------------------------------------------------------

@FAST
@given(st.from_regex(r"[A-Za-z0-9_]{1,30}", fullmatch=True), st.sampled_from(ROLES), st.booleans())
def test_valid_usernames_and_roles_are_accepted(username, role, reset):
    request = validate_admin_request({"username": username, "email": "a@b.example", "role": role, "reset_password": reset})
    assert request.username == username and request.secret_key == username.lower()


@FAST
@given(st.text(max_size=40))
def test_bad_usernames_are_refused_without_side_effects(username):
    assume(not (USERNAME_RE.fullmatch(username) and len(username) <= 30))
    assert_refused(dict(GOOD, username=username), "username")


@FAST
@given(st.text(max_size=80))
def test_bad_emails_are_refused_without_side_effects(email):
    assume(not (EMAIL_RE.fullmatch(email) and len(email) <= 254))
    assert_refused(dict(GOOD, email=email), "email")


@FAST
@given(st.text(max_size=20))
def test_roles_outside_owner_admin_moderator_are_refused(role):
    assume(role not in ROLES)
    assert "must be one of Owner, Admin, Moderator" in assert_refused(dict(GOOD, role=role), "role")


@FAST
@given(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.integers(), st.text(max_size=10), st.booleans(),
                                                       st.lists(st.integers(), max_size=2)), max_size=5))
def test_arbitrary_objects_are_refused_unless_valid(data):
    assume(set(data) != {"username", "email", "role"} and set(data) != {"username", "email", "role", "reset_password"})
    assert_refused(data, None)


@pytest.mark.parametrize("data, field", [
    (None, None), ([], None), ("alice", None),
    (dict(GOOD, username=7), "username must be a string"),
    (dict(GOOD, reset_password="yes"), "reset_password must be true or false"),
    ({k: v for k, v in GOOD.items() if k != "email"}, "email is required"),
    (dict(GOOD, password="hunter2hunter2"), "password is not an accepted field"),
    (dict(GOOD, username="a" * 31), "at most 30 characters"),
])
def test_wrong_shapes_and_types_get_specific_messages(data, field):
    message = assert_refused(data, field)
    assert "hunter2" not in message


# --- one-off allow-list ---------------------------------------------------------------------------

@FAST
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=6))
def test_commands_outside_the_allow_list_are_refused(argv):
    program = argv[0]
    allowed = (
        program == "rails" and len(argv) == 2 and argv[1] in commands.RAILS_TASKS
    ) or (
        program == "tootctl" and len(argv) >= 2 and (
            argv[1] in commands.TOOTCTL_SINGLE
            or (len(argv) >= 3 and argv[2] in commands.TOOTCTL_OPTIONS.get(argv[1], {})
                and not any(a.split("=")[0] in commands.TOOTCTL_REFUSED_FLAGS for a in argv[3:]))))
    safe = all(re.fullmatch(r"[^\x00-\x1f\x7f]{1,256}", a) for a in argv)
    if allowed and safe:
        assert commands.validate_command(argv)[len(commands.PROGRAMS[program]):] == argv[1:]
    else:
        with pytest.raises(InvalidInput):
            commands.validate_command(argv)


@pytest.mark.parametrize("argv, expected", [
    (["tootctl", "media", "usage"], ["bin/tootctl", "media", "usage"]),
    (["tootctl", "media", "remove", "--days", "7"], ["bin/tootctl", "media", "remove", "--days", "7"]),
    (["tootctl", "preview_cards", "remove", "--days", "180"], ["bin/tootctl", "preview_cards", "remove", "--days", "180"]),
    (["tootctl", "version"], ["bin/tootctl", "version"]),
    (["rails", "db:migrate"], ["bin/rails", "db:migrate"]),
])
def test_allowed_commands_become_exec_form_argv(argv, expected):
    assert commands.validate_command(argv) == expected


@pytest.mark.parametrize("argv, message", [
    ("tootctl media usage", "not a string"),
    ([], "non-empty list"),
    (["tootctl", "media", 7], "argument 2 must be a string"),
    (["tootctl", "media", "usage\n; rm -rf /"], "without control characters"),
    (["tootctl", "accounts", "create", "x"], "create-admin"),
    (["tootctl", "accounts", "modify", "x", "--reset-password"], "prints the new password"),
    (["tootctl", "accounts", "modify", "x", "--reset-password=true"], "prints the new password"),
    (["rails", "db:migrate", "extra"], "rails task not allowed"),
    (["rails", "db:encryption:init"], "rails task not allowed"),
    (["sh", "-c", "tootctl media usage"], "program not allowed"),
    (["tootctl"] + ["x"] * 40, "at most 32"),
])
def test_refusals_say_why(argv, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        commands.validate_command(argv)


# --- redaction ------------------------------------------------------------------------------------

@FAST
@given(st.text(min_size=8, max_size=40).filter(lambda s: s.strip() == s and "\n" not in s),
       st.text(max_size=30), st.text(max_size=30))
def test_a_line_holding_a_secret_is_always_withheld(secret, before, after):
    lines = redact.withhold([before + secret + after, "Attachments: 1 GB"], {secret})
    assert lines[0] == redact.WITHHELD
    assert all(secret not in line for line in lines)


def test_json_secrets_contribute_secret_fields_only():
    values = redact.values_of(json.dumps({"username": "mastodon", "password": "p4ssw0rd-long", "host": "db.internal",
                                          "VAPID_PUBLIC_KEY": "BPublicKeyNotSecret", "OTP_SECRET": "0123456789abcdef"}))
    assert values == {"p4ssw0rd-long", "0123456789abcdef"}
    assert redact.values_of("plain-secret-value") == {"plain-secret-value"}
    assert redact.values_of("short") == set()
    assert redact.withhold(["user mastodon connected", "New password: abc"], values) == ["user mastodon connected", redact.WITHHELD]


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


# --- task summaries -------------------------------------------------------------------------------

TASKDEF = {"containerDefinitions": [{"name": "toolbox", "logConfiguration": {"logDriver": "awslogs", "options": {
    "awslogs-group": "/tootstack/prod/toolbox", "awslogs-stream-prefix": "toolbox", "awslogs-region": "eu-west-1"}}}]}


def test_log_location_and_console_link():
    found = tasks.log_location(TASKDEF, "toolbox", "arn:aws:ecs:eu-west-1:1:task/c/abc123", "us-east-1")
    assert found["log_group"] == "/tootstack/prod/toolbox"
    assert found["log_stream"] == "toolbox/toolbox/abc123"
    assert found["log_link"] == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/"
        "$252Ftootstack$252Fprod$252Ftoolbox/log-events/toolbox$252Ftoolbox$252Fabc123")
    assert tasks.log_location(TASKDEF, "other", "arn", "us-east-1") == {}


def test_summarize_reads_step_functions_and_ecs_shapes():
    pascal = {"TaskArn": "arn:t/1", "StopCode": "EssentialContainerExited", "Containers": [{"Name": "toolbox", "ExitCode": 3}]}
    camel = {"taskArn": "arn:t/1", "stopCode": "TaskFailedToStart", "stoppedReason": "CannotPull",
             "containers": [{"name": "toolbox", "reason": "x"}]}
    assert tasks.summarize(pascal, "toolbox")["exit_code"] == 3
    summary = tasks.summarize(camel, "toolbox")
    assert summary["exit_code"] is None and summary["stop_code"] == "TaskFailedToStart"
    assert "never ran its container" in admin.failure_message("alice", summary)


# --- the admin script's own guards (ruby, no Step Functions) --------------------------------------

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


def test_script_fits_in_a_runtask_override():
    # RunTask overrides are limited to 8192 characters in total; the script travels in one.
    assert len(SCRIPT.encode()) < 6000


# --- sample events --------------------------------------------------------------------------------

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


# --- retries are idempotent -----------------------------------------------------------------------

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
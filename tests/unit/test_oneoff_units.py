"""Validation (hypothesis-generated bad inputs), the allow-list, redaction and task summaries. The admin
script's own guards (run with ruby), secrets read back from moto, the sample events of both functions and
idempotent retries are in tests/emulated/test_oneoff_emulated.py."""

import json
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tootstack.errors import InvalidInput
from tootstack.oneoff import admin, commands, redact, tasks
from tootstack.oneoff.admin import EMAIL_RE, ROLES, USERNAME_RE, validate_admin_request

from tootstack_dev.local.template import project_root

ROOT = project_root()

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


# --- the admin script (its guards run with ruby: tests/emulated/test_oneoff_emulated.py) -----------

def test_script_fits_in_a_runtask_override():
    # RunTask overrides are limited to 8192 characters in total; the script travels in one.
    assert len(SCRIPT.encode()) < 6000

"""Property-based tests over every console input: create-admin, run-oneoff, mirror, upgrade, maintenance.

Each entry point gets hostile JSON (any shape, Unicode digits, reserved names, option spellings,
oversized and control-character text) through its real Lambda handler in moto. The property: a clear
InvalidInput (or the documented result for input that is in fact valid), never another exception,
and when refused, NO state change (secrets with every version and label, SSM parameters, ECS
services and task definitions, DynamoDB items: tests/emulated/fuzz_support.py aws_state).

Input classes tried, per entry point:
- create-admin prepare: arbitrary JSON; objects with fuzzed username (reserved/"pending" in any case,
  Unicode letters and digits, 31+ chars, control characters), email, role, reset_password (non-bool)
  and extra keys; fuzzed request (execution name) and action; finish with arbitrary state/outcome.
- run-oneoff validate: arbitrary JSON; argv lists built from allow-listed words, every spelling of
  --reset-password (`_`, `=value`, `--no-`, short clusters, `--`), rails tasks and free text; the
  accepted ones are checked against an independent reading of Thor's rules. report with arbitrary state.
- mirror: arbitrary "images" values and entries, arbitrary events, arbitrary credential-secret JSON.
- upgrade prepare: arbitrary input and execution names, every version shape (Unicode digits, pre-releases).
- maintenance: arbitrary input objects with fuzzed days (Unicode digits, signs, floats, huge) and flags.
"""

import json
import re

import boto3
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tootstack.errors import InvalidInput
from tootstack_dev.local.aws import LambdaContext, LocalAws
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.mirror.auth import parse_source_credentials
from tootstack.oneoff.admin import EMAIL_RE, PENDING_PLACEHOLDER, ROLES

from tests.emulated.fuzz_support import FEW, FUZZ, JSON, NASTY, TEXT, aws_state

ROOT = project_root()
STACK = "fz"
REGION = "us-east-1"
ENV = {
    "STACK_NAME": STACK, "ADMIN_CONTAINER_NAME": "admin", "ADMIN_TASK_TIMEOUT_SECONDS": "900",
    "ONEOFF_CONTAINER_NAME": "toolbox", "ONEOFF_TASK_TIMEOUT_SECONDS": "3600",
    "REPOSITORIES": json.dumps({"mastodon-zz9": "fz-mastodon"}), "PARAMETER_PREFIX": "/fz/images",
    "CLUSTER_NAME": STACK, "SERVICE_NAMES": "web", "SCHEDULER_SERVICE": "web", "TOOLBOX_FAMILY": "fz-toolbox",
    "UPGRADE_LOCK_PARAMETER": "/fz/upgrade-lock", "VERSION_PARAMETER": "/fz/version",
    "IMAGE_SOURCES": "mastodon=ghcr.io/mastodon/mastodon", "IMAGE_DESTINATIONS": "mastodon=1.dkr.ecr/fz",
    "MAINTENANCE_MEDIA_DAYS": "7", "MAINTENANCE_PREVIEW_CARDS_DAYS": "180", "MAINTENANCE_PRUNE_ACCOUNTS": "false",
    "POWERTOOLS_SERVICE_NAME": "tootstack", "POWERTOOLS_METRICS_NAMESPACE": "tootstack",
}
pytestmark = [pytest.mark.filterwarnings("ignore:No application metrics to publish"),
              pytest.mark.xdist_group("fuzz-console")]   # one worker builds the module's moto world once
NEWEST = "v999.999.999"   # every valid version is a downgrade from here: a fuzzed upgrade can never take the lock


@pytest.fixture(scope="module")
def world():
    patch = pytest.MonkeyPatch()
    with LocalAws(region=REGION):
        sm, ssm, ecs = (boto3.client(s, region_name=REGION) for s in ("secretsmanager", "ssm", "ecs"))
        staging = sm.create_secret(Name=f"{STACK}/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
        sm.create_secret(Name=f"{STACK}/admin/alice", SecretString="alice-password-0123456789abcdef",
                         Tags=[{"Key": "tootstack:purpose", "Value": "admin-password"}])
        app = sm.create_secret(Name=f"{STACK}/app", SecretString=json.dumps({"SECRET_KEY_BASE": "k" * 64}))["ARN"]
        ssm.put_parameter(Name="/fz/version", Value=NEWEST, Type="String")
        ecs.create_cluster(clusterName=STACK)
        td = ecs.register_task_definition(family="fz-web", containerDefinitions=[
            {"name": "web", "image": f"ghcr.io/mastodon/mastodon:{NEWEST}", "memory": 512}])["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(cluster=STACK, serviceName="web", taskDefinition=td, desiredCount=1)
        for key, value in dict(ENV, ADMIN_PENDING_SECRET_ARN=staging, ONEOFF_SECRET_ARNS=app).items():
            patch.setenv(key, value)
        handlers = {name: LocalFunction(f"Fuzz{name}", ROOT / "functions" / name, "app.handler", {}).entrypoint
                    for name in ("create_admin", "run_oneoff", "mirror", "upgrade", "maintenance_gate")}

        def call(name, event):
            return handlers[name](event, LambdaContext(name))

        call("maintenance_gate", {"input": {}})   # warm: boto3 models, handler imports
        yield call
    patch.undo()


def refused_without_change(call, name, event):
    """Run the handler; InvalidInput must leave aws_state() as it was. Returns the result or None."""
    before = aws_state(REGION)
    try:
        result = call(name, event)
    except InvalidInput as exc:
        assert str(exc), "an InvalidInput says why"
        assert aws_state(REGION) == before, f"{name} changed state on refused input"
        return None
    return result


# --- create-admin ----------------------------------------------------------------------------------

ADMIN_KEYS = ("username", "email", "role", "reset_password")


def admin_input_valid(data):
    """An oracle written from the README's rules (Mastodon usernames: ASCII letters, digits, _; <= 30)."""
    if not isinstance(data, dict) or set(data) - set(ADMIN_KEYS) or not {"username", "email", "role"} <= set(data):
        return False
    username, email = data["username"], data["email"]
    return (isinstance(username, str) and re.fullmatch(r"[A-Za-z0-9_]{1,30}", username, re.ASCII) is not None
            and isinstance(email, str) and len(email) <= 254 and EMAIL_RE.fullmatch(email) is not None
            and data["role"] in ROLES and type(data["role"]) is str
            and ("reset_password" not in data or type(data["reset_password"]) is bool))


ADMIN_INPUT = JSON | st.fixed_dictionaries({}, optional={
    "username": TEXT | JSON, "email": TEXT | st.just("alice@example.org"), "role": st.sampled_from(ROLES) | TEXT | JSON,
    "reset_password": st.booleans() | JSON, "password": TEXT, "Username": TEXT,
})


@FUZZ
@given(data=ADMIN_INPUT, request=TEXT)
def test_create_admin_prepare_refuses_bad_input_without_change(world, data, request):
    assume(not admin_input_valid(data))
    assert refused_without_change(world, "create_admin", {"action": "prepare", "input": data, "request": request}) is None


@FEW
@given(event=JSON | st.fixed_dictionaries({"action": st.sampled_from(["prepare", "finish"]) | TEXT | JSON},
                                          optional={"input": JSON, "request": JSON, "state": JSON, "outcome": TEXT}))
def test_create_admin_events_of_any_shape_are_refused_without_change(world, event):
    if isinstance(event, dict) and event.get("action") == "prepare":
        assume(not (admin_input_valid(event.get("input")) and isinstance(event.get("request"), str) and event["request"]))
    assert refused_without_change(world, "create_admin", event) is None


@FEW
@given(state=JSON, outcome=TEXT)
def test_create_admin_finish_with_any_state_is_refused_without_change(world, state, outcome):
    assert refused_without_change(world, "create_admin", {"action": "finish", "state": state, "outcome": outcome}) is None


# --- run-oneoff ------------------------------------------------------------------------------------

WORDS = st.sampled_from([
    "tootctl", "rails", "accounts", "modify", "create", "media", "usage", "remove", "refresh", "alice", "Owner",
    "--reset-password", "--reset_password", "--reset-password=true", "--reset_password=t", "--no-reset-password",
    "--skip-reset-password", "--RESET-PASSWORD", "--", "-", "-r", "-cv", "-c5", "--role", "--role=Owner", "--email",
    "--days", "7", "--days=²", "--dry_run", "--dry-run=false", "true", "db:migrate", "secret", "help", "version",
    "settings", "registrations", "open", "--email=--reset-password", "-x=1",
])
ARGV = st.lists(WORDS | TEXT, max_size=8)


def thor_reset_password(argv):
    """Independent reading of Thor's rules (rails/thor lib/thor/parser/options.rb): would tootctl see
    --reset-password (set true) anywhere in `argv`?"""
    for arg in argv:
        if arg == "--":
            return False
        match = re.fullmatch(r"(--\w+(?:-\w+)*)(?:=(.*))?", arg, re.ASCII | re.DOTALL)
        if match and match.group(1).replace("_", "-") == "--reset-password":
            return match.group(2) not in ("false", "FALSE", "f", "F")
    return False


@FUZZ
@given(argv=ARGV.map(lambda rest: ["tootctl", "accounts", "modify", *rest]) | ARGV | JSON)
def test_run_oneoff_validate_accepts_only_allow_listed_commands(world, argv):
    result = refused_without_change(world, "run_oneoff", {"action": "validate", "input": {"command": argv}})
    if result is None:
        return
    command = result["command"]
    assert command[0] in ("bin/tootctl", "bin/rails") and command[1:] == argv[1:]
    assert not thor_reset_password(argv[1:]), argv
    assert argv[1:3] != ["accounts", "create"]
    if argv[0] == "rails":
        assert argv[1] in ("db:migrate", "db:migrate:status", "db:version", "db:prepare")


@FEW
@given(event=JSON | st.fixed_dictionaries({"action": st.just("report")}, optional={"state": JSON}))
def test_run_oneoff_events_and_report_states_of_any_shape(world, event):
    result = refused_without_change(world, "run_oneoff", event)
    if result is not None:   # a report of whatever the state held: the documented fields, a summary
        assert set(result) >= {"status", "command", "exit_code", "summary"}


# --- mirror ----------------------------------------------------------------------------------------

@FUZZ
@given(images=JSON | st.lists(TEXT | st.fixed_dictionaries({}, optional={"source": TEXT, "repository": TEXT, "name": JSON}),
                              max_size=12))
def test_mirror_console_input_is_refused_before_any_copy(world, images):
    assume("mastodon-zz9" not in json.dumps(images))
    assert refused_without_change(world, "mirror", {"images": images}) is None


@FEW
@given(event=JSON)
def test_mirror_events_of_any_shape(world, event):
    assume(not (isinstance(event, dict) and "images" in event and "mastodon-zz9" in json.dumps(event)))
    assert refused_without_change(world, "mirror", event) is None


@FUZZ
@given(value=JSON | st.fixed_dictionaries({}, optional={"auths": JSON, "username": TEXT | JSON, "password": TEXT | JSON,
                                                        "registry": TEXT | JSON, "auth": TEXT}))
def test_mirror_credential_secrets_parse_or_are_invalid_input(value):
    try:
        keyed = parse_source_credentials(value)
    except InvalidInput as exc:
        assert str(exc)
        return
    assert all(isinstance(h, str) and isinstance(u, str) and isinstance(p, str) for h, (u, p) in keyed.items())


# --- upgrade ---------------------------------------------------------------------------------------

VERSION = NASTY | st.from_regex(r"v[0-9٣４]{1,4}\.[0-9²]{1,3}\.[0-9]{1,3}(-(alpha|beta|rc|x)\.[0-9]{1,3})?", fullmatch=True)


@FUZZ
@given(data=JSON | st.fixed_dictionaries({}, optional={"version": VERSION | JSON, "force": JSON}), execution=TEXT | JSON)
def test_upgrade_prepare_refuses_bad_input_without_change(world, data, execution):
    assume(not (isinstance(data, dict) and data.get("version") == NEWEST))
    event = {"action": "prepare", "input": data, "execution": execution}
    assert refused_without_change(world, "upgrade", event) is None


@FEW
@given(event=JSON | st.fixed_dictionaries({"action": st.just("prepare") | TEXT | JSON}, optional={"input": JSON, "execution": JSON}))
def test_upgrade_events_of_any_shape(world, event):
    assume(not (isinstance(event, dict) and event.get("action") in ("mirror", "register", "deploy", "check",
                                                                   "rollback", "finish", "release")))
    assert refused_without_change(world, "upgrade", event) is None


# --- maintenance -----------------------------------------------------------------------------------

DAYS = NASTY | st.integers(min_value=-10, max_value=10**12) | st.from_regex(r"[0-9²４٣ +-]{1,6}", fullmatch=True) | JSON


@FUZZ
@given(data=JSON | st.fixed_dictionaries({}, optional={"media_days": DAYS, "preview_cards_days": DAYS,
                                                       "prune_accounts": JSON | TEXT, "extra": JSON}))
def test_maintenance_input_gives_a_plan_or_invalid_input(world, data):
    result = refused_without_change(world, "maintenance_gate", {"input": data})
    if result is None:
        return
    assert result["proceed"] is True and result["steps"]
    for step in result["steps"]:
        assert all(re.fullmatch(r"[A-Za-z0-9_/:.-]+", arg, re.ASCII) for arg in step["command"]), step

"""create-admin's security boundaries: the staging secret's namespace, staged password resets, and no
password left in the staging secret after a run.

Run against the create-admin state machine in moto (LocalAws) with the real handler and the real
create_admin.rb where the outcome depends on them, and against `tootstack.oneoff.admin` directly for
interleavings a state machine run cannot order deterministically.

Secrets Manager facts relied on (https://docs.aws.amazon.com/secretsmanager/latest/apireference/
API_UpdateSecretVersionStage.html): moving AWSCURRENT moves AWSPREVIOUS to the version it left; a version
whose last label is removed is deprecated; moving a label that is attached elsewhere needs
RemoveFromVersionId naming that version, else the call fails.
"""

import hashlib
import json

import pytest

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack.oneoff import admin
from tootstack.oneoff.admin import PENDING_PLACEHOLDER, user_secret_name

from tests.fixtures.oneoff import ROOT, SecretScan, client

SCRIPT = (ROOT / "functions/create_admin/create_admin.rb").read_text()
ALICE = {"username": "alice", "email": "alice@example.org", "role": "Owner"}


def staging(stack):
    return json.loads(client("secretsmanager").get_secret_value(SecretId=stack.pending_arn)["SecretString"])


def user_password(stack, username):
    return client("secretsmanager").get_secret_value(SecretId=user_secret_name(stack.stack_name, username))["SecretString"]


def account_has_password(stack, username, password):
    """The stand-in Mastodon (tests/data/fake_mastodon.rb) stores sha256(password) as the digest."""
    return stack.accounts()[username]["password_digest"] == hashlib.sha256(password.encode()).hexdigest()


# --- the staging secret is out of every username's reach ------------------------------------------

@pytest.mark.parametrize("username", ["pending", "PENDING", "Pending"])
def test_username_pending_gets_its_own_secret_never_the_staging_one(admin_stack, username, caplog, capsys):
    scan = SecretScan(admin_stack.aws)
    execution = admin_stack.aws.run_state_machine(admin_stack.admin_sm, dict(ALICE, username=username))
    scan.executions.append(execution)

    assert execution.status == "SUCCEEDED", execution.cause
    out = execution.output
    assert out["status"] == "created"
    assert out["password_secret_arn"] != admin_stack.pending_arn
    assert out["password_secret_arn"].split(":secret:")[1].startswith(f"{admin_stack.stack_name}/admin/pending-")
    password = user_password(admin_stack, "pending")
    assert account_has_password(admin_stack, "pending", password) and len(password) == admin.PASSWORD_LENGTH
    assert staging(admin_stack) == PENDING_PLACEHOLDER
    scan.assert_absent([password], caplog, capsys)


def test_a_user_secret_name_taken_by_a_secret_create_admin_did_not_make_is_refused(local_aws):
    """The old layout kept the staging secret at <stack>/admin/pending: after the update a leftover (or any
    secret an operator made there) has no create-admin tag and is never used as a user's password."""
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    sm.create_secret(Name="s/admin/pending", SecretString=json.dumps(dict(PENDING_PLACEHOLDER, password="x" * 32)))
    before = sm.describe_secret(SecretId=staging_arn)["VersionIdsToStages"]

    with pytest.raises(TootstackError, match="not a create-admin password secret"):
        admin.prepare(sm, "s", staging_arn, dict(ALICE, username="Pending"), "exec-1", SCRIPT)

    assert sm.describe_secret(SecretId=staging_arn)["VersionIdsToStages"] == before
    assert json.loads(sm.get_secret_value(SecretId="s/admin/pending")["SecretString"])["password"] == "x" * 32


# --- a reset is promoted only when the task reports it ----------------------------------------------

@pytest.mark.parametrize("task", [
    TaskResult(exit_code=1, log_lines=("boom",)),
    TaskResult.failed_to_start("CannotPullContainerError: pull access denied"),
], ids=["task-fails", "task-never-starts"])
def test_failed_reset_leaves_the_secret_matching_the_account(admin_stack, task, caplog, capsys):
    scan = SecretScan(admin_stack.aws)
    created = admin_stack.aws.run_state_machine(admin_stack.admin_sm, ALICE)
    assert created.status == "SUCCEEDED", created.cause
    before = user_password(admin_stack, "alice")
    admin_stack.aws.tasks.on(admin_stack.admin_family, lambda run: task)

    reset = admin_stack.aws.run_state_machine(admin_stack.admin_sm, dict(ALICE, reset_password=True))
    scan.executions += [created, reset]

    assert reset.status == "FAILED"
    assert user_password(admin_stack, "alice") == before
    assert account_has_password(admin_stack, "alice", before)
    assert "was not promoted" in reset.cause
    assert staging(admin_stack) == PENDING_PLACEHOLDER
    scan.assert_absent([before], caplog, capsys)


def test_two_concurrent_resets_end_with_the_secret_matching_the_account(local_aws):
    """The interleaving a console user can cause: execution B starts while A's task runs. A task gets
    the staging secret's values when it starts (ECS injects `secrets` at launch) and writes the account
    when it ends; here B's task ends last, the order that used to leave the secret at A's password."""
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    account = {}

    def start_task(prepared):  # what ECS injects into the container at launch
        return dict(json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"]), expected=prepared["request"])

    def end_task(injected):  # create_admin.rb: refuses another request's staging, else sets the password
        if injected["request"] != injected["expected"]:
            return "failed"
        account["password"] = injected["password"]
        return "password_reset"

    created = admin.prepare(sm, "s", staging_arn, ALICE, "create", SCRIPT)
    account["password"] = start_task(created)["password"]
    admin.finish(sm, staging_arn, created, "created")

    reset = dict(ALICE, reset_password=True)
    a = admin.prepare(sm, "s", staging_arn, reset, "exec-a", SCRIPT)
    task_a = start_task(a)
    try:
        b = admin.prepare(sm, "s", staging_arn, reset, "exec-b", SCRIPT)
    except admin.AdminBusy:
        b = None
    task_b = start_task(b) if b else None
    outcome_b = end_task(task_b) if task_b else None
    outcome_a = end_task(task_a)
    if b:
        admin.finish(sm, staging_arn, b, outcome_b)
    admin.finish(sm, staging_arn, a, outcome_a)

    assert sm.get_secret_value(SecretId=a["secret_arn"])["SecretString"] == account["password"]
    assert json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"]) == PENDING_PLACEHOLDER


def test_busy_staging_secret_changes_nothing(local_aws):
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    first = admin.prepare(sm, "s", staging_arn, ALICE, "exec-1", SCRIPT)
    admin.finish(sm, staging_arn, first, "created")
    held = admin.prepare(sm, "s", staging_arn, dict(ALICE, reset_password=True), "exec-2", SCRIPT)
    secrets_before = sm.list_secrets()["SecretList"]
    user_before = sm.describe_secret(SecretId=first["secret_arn"])["VersionIdsToStages"]
    staging_before = sm.describe_secret(SecretId=staging_arn)["VersionIdsToStages"]

    with pytest.raises(admin.AdminBusy, match="exec-2"):
        admin.prepare(sm, "s", staging_arn, dict(ALICE, username="bob", email="bob@example.org"), "exec-3", SCRIPT)

    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == [s["Name"] for s in secrets_before]
    assert sm.describe_secret(SecretId=first["secret_arn"])["VersionIdsToStages"] == user_before
    assert {v: s for v, s in sm.describe_secret(SecretId=staging_arn)["VersionIdsToStages"].items() if s} == \
        {v: s for v, s in staging_before.items() if s}
    admin.finish(sm, staging_arn, held, "failed")


# --- no password left in the staging secret -----------------------------------------------------

def test_after_the_run_no_labelled_staging_version_holds_the_password(admin_stack):
    execution = admin_stack.aws.run_state_machine(admin_stack.admin_sm, ALICE)
    assert execution.status == "SUCCEEDED", execution.cause
    password = user_password(admin_stack, "alice")
    sm = client("secretsmanager")

    stages = sm.describe_secret(SecretId=admin_stack.pending_arn)["VersionIdsToStages"]
    labelled = {version: labels for version, labels in stages.items() if labels}
    assert labelled, "the staging secret has a current version"
    for version in labelled:
        assert password not in sm.get_secret_value(SecretId=admin_stack.pending_arn, VersionId=version)["SecretString"]
    for stage in ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING"):
        try:
            value = sm.get_secret_value(SecretId=admin_stack.pending_arn, VersionStage=stage)["SecretString"]
        except sm.exceptions.ResourceNotFoundException:
            continue
        assert password not in value, stage


def test_prepare_retried_after_it_died_mid_staging_keeps_one_password(local_aws, monkeypatch):
    """Lambda killed after the staging version was written but before it became current: the retry (same
    execution, same ClientRequestToken) must reuse that version, since Secrets Manager refuses a second
    value under one token, and the user's secret must get the same password."""
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    calls = {"n": 0}
    original = sm.update_secret_version_stage

    def dies_once(**kwargs):
        if kwargs.get("VersionStage") == "AWSCURRENT" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("Lambda timed out")
        return original(**kwargs)

    put = sm.put_secret_value

    def put_like_aws(**kwargs):
        """PutSecretValue: "you cannot modify an existing secret version" (a token reused with another value
        fails; https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html)."""
        from botocore.exceptions import ClientError

        token = kwargs.get("ClientRequestToken")
        if token and token in (sm.describe_secret(SecretId=kwargs["SecretId"]).get("VersionIdsToStages") or {}):
            if sm.get_secret_value(SecretId=kwargs["SecretId"], VersionId=token)["SecretString"] != kwargs.get("SecretString"):
                raise ClientError({"Error": {"Code": "ResourceExistsException", "Message": "version exists"}}, "PutSecretValue")
        return put(**kwargs)

    monkeypatch.setattr(sm, "put_secret_value", put_like_aws)
    monkeypatch.setattr(sm, "update_secret_version_stage", dies_once)
    with pytest.raises(RuntimeError):
        admin.prepare(sm, "s", staging_arn, ALICE, "exec-1", SCRIPT)
    monkeypatch.setattr(sm, "update_secret_version_stage", original)

    prepared = admin.prepare(sm, "s", staging_arn, ALICE, "exec-1", SCRIPT)

    staged = json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"])
    assert staged["request"] == "exec-1"
    assert sm.get_secret_value(SecretId=prepared["secret_arn"])["SecretString"] == staged["password"]
    admin.finish(sm, staging_arn, prepared, "created")


def test_two_executions_staging_at_the_same_instant_one_wins(local_aws, monkeypatch):
    """Both read the placeholder as current before either moved AWSCURRENT: the second move names a
    version that no longer holds AWSCURRENT, which Secrets Manager refuses, so only one proceeds."""
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    seen_free = admin._staging_holder(sm, staging_arn, 1800)
    a = admin.prepare(sm, "s", staging_arn, ALICE, "exec-a", SCRIPT)
    monkeypatch.setattr(admin, "_staging_holder", lambda *args: seen_free)   # B's read happened before A's move

    with pytest.raises(admin.AdminBusy, match="took the staging secret meanwhile"):
        admin.prepare(sm, "s", staging_arn, dict(ALICE, username="bob", email="bob@example.org"), "exec-b", SCRIPT)

    assert json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"])["request"] == "exec-a"
    assert "s/admin/bob" not in [s["Name"] for s in sm.list_secrets()["SecretList"]]
    admin.finish(sm, staging_arn, a, "created")


def test_a_holder_that_died_without_finishing_is_taken_over_after_the_timeout(local_aws, monkeypatch):
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    admin.prepare(sm, "s", staging_arn, ALICE, "died", SCRIPT, task_timeout_seconds=900)   # never finished
    bob = dict(ALICE, username="bob", email="bob@example.org")
    with pytest.raises(admin.AdminBusy):
        admin.prepare(sm, "s", staging_arn, bob, "too-early", SCRIPT, task_timeout_seconds=900)

    later = admin.time.time() + 900 + admin.STALE_MARGIN_SECONDS + 60
    monkeypatch.setattr(admin.time, "time", lambda: later)
    taken = admin.prepare(sm, "s", staging_arn, bob, "later", SCRIPT, task_timeout_seconds=900)

    assert json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"])["request"] == "later"
    admin.finish(sm, staging_arn, taken, "created")


def test_a_takeover_between_the_check_and_the_read_never_returns_another_requests_password(local_aws, monkeypatch):
    """staged_password checks that AWSCURRENT is this request's version, then reads it: when a stale-holder
    takeover moves AWSCURRENT in between, the read must still return this request's password (read by
    VersionId), never the password the taking-over request staged."""
    sm = client("secretsmanager")
    staging_arn = sm.create_secret(Name="s/admin-staging", SecretString=json.dumps(PENDING_PLACEHOLDER))["ARN"]
    admin.prepare(sm, "s", staging_arn, ALICE, "died", SCRIPT, task_timeout_seconds=900)   # never finished
    died_password = json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"])["password"]
    bob = dict(ALICE, username="bob", email="bob@example.org")
    later = admin.time.time() + 900 + admin.STALE_MARGIN_SECONDS + 60
    describe = sm.describe_secret
    taken = {}

    def takeover_after_the_check(**kwargs):
        described = describe(**kwargs)
        if not taken:
            taken["bob"] = None
            monkeypatch.setattr(admin.time, "time", lambda: later)
            taken["bob"] = admin.prepare(sm, "s", staging_arn, bob, "later", SCRIPT, task_timeout_seconds=900)
        return described

    monkeypatch.setattr(sm, "describe_secret", takeover_after_the_check)
    password = admin.staged_password(sm, staging_arn, "died")
    monkeypatch.setattr(sm, "describe_secret", describe)

    later_password = json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"])["password"]
    assert json.loads(sm.get_secret_value(SecretId=staging_arn)["SecretString"])["request"] == "later"
    assert password == died_password != later_password
    admin.finish(sm, staging_arn, taken["bob"], "created")

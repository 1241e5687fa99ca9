"""The create-admin state machine, executed in moto's Step Functions engine (LocalAws), with the real
Lambda handler and the real create_admin.rb run by ruby against stand-in Mastodon models.

Every test that runs the state machine ends with a scan of every sink it captured for every password
value (see tests/fixtures/oneoff.py SecretScan): none may hold one.
"""

import hashlib
import json
import logging
import threading
import time

import pytest

from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.template import LocalFunction
from tootstack.oneoff.admin import PENDING_PLACEHOLDER, user_secret_name

from tests.fixtures.oneoff import ROOT, SecretScan, client, run_admin_script

ALICE = {"username": "alice", "email": "alice@example.org", "role": "Owner"}


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    # INFO, the level the functions log at in Lambda (Powertools' default). botocore's DEBUG logging
    # prints request bodies, secret values included: never enable it for these functions.
    caplog.set_level(logging.INFO)


def password_of(stack, username):
    sm = client("secretsmanager")
    return sm.get_secret_value(SecretId=user_secret_name(stack.stack_name, username))["SecretString"]


def pending(stack):
    sm = client("secretsmanager")
    return json.loads(sm.get_secret_value(SecretId=stack.pending_arn)["SecretString"])


def digest(value):
    return hashlib.sha256(value.encode()).hexdigest()


def run(stack, scan, data):
    execution = stack.aws.run_state_machine(stack.admin_sm, data)
    scan.executions.append(execution)
    return execution


def test_creates_the_admin_and_no_sink_holds_the_password(admin_stack, caplog, capsys):
    scan = SecretScan(admin_stack.aws)
    execution = run(admin_stack, scan, ALICE)

    assert execution.status == "SUCCEEDED", execution.cause
    out = execution.output
    password = password_of(admin_stack, "alice")
    assert out["status"] == "created" and out["username"] == "alice" and out["role"] == "Owner"
    assert out["password_secret_arn"].split(":secret:")[1].startswith(f"{admin_stack.stack_name}/admin/alice-")
    assert out["read_password_command"] == (
        f"aws secretsmanager get-secret-value --secret-id {out['password_secret_arn']} --query SecretString --output text")
    assert out["task"]["exit_code"] == 0
    assert out["task"]["log_stream"].startswith("admin/admin/") and out["task"]["log_link"].startswith("https://")
    # The account: created by the real script with the password the secret holds, confirmed, approved, Owner.
    account = admin_stack.accounts()["alice"]
    assert account["password_digest"] == digest(password)
    assert account["role"] == "Owner" and account["approved"] is True and account["confirmed_at"]
    # The container got the password through ECS secrets, not through the command or environment.
    (task_run,) = admin_stack.aws.tasks.runs
    assert task_run.secrets["ADMIN_PASSWORD"] == password
    assert "ADMIN_PASSWORD" not in task_run.environment
    assert task_run.command[:2] == ["bin/rails", "runner"]
    assert task_run.command[2] == (ROOT / "functions/create_admin/create_admin.rb").read_text()
    assert task_run.environment["ADMIN_USERNAME"] == "alice" and task_run.environment["ADMIN_ROLE"] == "Owner"
    # The pending secret no longer holds the password.
    assert pending(admin_stack) == PENDING_PLACEHOLDER
    # The scan: positive control first (the scanner finds what it looks for), then every sink.
    assert password in json.dumps(task_run.secrets)
    sizes = scan.assert_absent([password], caplog, capsys)
    assert sizes["execution input/output/history"] > 1000
    assert sizes["cloudwatch logs (all moto log events)"] > 0
    assert sizes["python logging (caplog: messages, args, extra fields)"] > 0


def test_rerun_for_an_existing_user_reports_it_and_keeps_the_password(admin_stack, caplog, capsys):
    scan = SecretScan(admin_stack.aws)
    assert run(admin_stack, scan, ALICE).status == "SUCCEEDED"
    first = password_of(admin_stack, "alice")

    again = run(admin_stack, scan, dict(ALICE, role="Admin"))

    assert again.status == "SUCCEEDED", again.cause
    assert again.output["status"] == "existing"
    assert "password unchanged" in again.output["message"]
    assert password_of(admin_stack, "alice") == first
    account = admin_stack.accounts()["alice"]
    assert account["password_digest"] == digest(first) and account["role"] == "Admin"
    assert [r["exit_code"] for r in admin_stack.ruby_runs] == [0, 10]
    scan.assert_absent([first], caplog, capsys)


def test_reset_password_sets_a_new_one_from_the_secret(admin_stack, caplog, capsys):
    scan = SecretScan(admin_stack.aws)
    created = run(admin_stack, scan, ALICE)
    assert created.status == "SUCCEEDED"
    first = password_of(admin_stack, "alice")

    reset = run(admin_stack, scan, dict(ALICE, reset_password=True))

    assert reset.status == "SUCCEEDED", reset.cause
    assert reset.output["status"] == "password_reset"
    second = password_of(admin_stack, "alice")
    assert second != first
    assert admin_stack.accounts()["alice"]["password_digest"] == digest(second)
    assert reset.output["password_secret_arn"] == created.output["password_secret_arn"]
    scan.assert_absent([first, second], caplog, capsys)


def test_username_case_maps_to_one_account_and_one_secret(admin_stack, caplog, capsys):
    scan = SecretScan(admin_stack.aws)
    assert run(admin_stack, scan, ALICE).status == "SUCCEEDED"
    upper = run(admin_stack, scan, dict(ALICE, username="ALICE"))
    assert upper.status == "SUCCEEDED" and upper.output["status"] == "existing"
    assert list(admin_stack.accounts()) == ["alice"]
    scan.assert_absent([password_of(admin_stack, "alice")], caplog, capsys)


def test_existing_account_without_a_tootstack_secret_is_not_given_a_wrong_secret(admin_stack, caplog, capsys):
    admin_stack.db_path.write_text(json.dumps({"accounts": {"bob": {
        "username": "bob", "email": "bob@example.org", "role": "Moderator", "approved": False,
        "confirmed_at": "", "password_digest": digest("bobs-own-password")}}}))
    scan = SecretScan(admin_stack.aws)

    execution = run(admin_stack, scan, {"username": "bob", "email": "bob@example.org", "role": "Admin"})

    assert execution.status == "SUCCEEDED", execution.cause
    assert execution.output["status"] == "existing"
    assert "password_secret_arn" not in execution.output  # the fresh secret does not hold bob's password
    assert "reset_password" in execution.output["message"]
    sm = client("secretsmanager")
    assert not [s for s in sm.list_secrets()["SecretList"] if s["Name"].endswith("/admin/bob")]
    bob = admin_stack.accounts()["bob"]
    assert bob["password_digest"] == digest("bobs-own-password")
    assert bob["role"] == "Admin" and bob["approved"] is True and bob["confirmed_at"]
    scan.assert_absent([admin_stack.aws.tasks.runs[0].secrets["ADMIN_PASSWORD"]], caplog, capsys)


def test_container_exit_1_fails_the_execution_and_clears_the_pending_secret(admin_stack, caplog, capsys):
    admin_stack.aws.tasks.on(admin_stack.admin_family, TaskResult(exit_code=1, log_lines=("PG::ConnectionBad",)))
    scan = SecretScan(admin_stack.aws)

    execution = run(admin_stack, scan, ALICE)

    assert execution.status == "FAILED"
    assert execution.error == "AdminTaskFailed"
    assert "exited with code 1" in execution.cause and "admin/admin/" in execution.cause
    assert pending(admin_stack) == PENDING_PLACEHOLDER
    assert "alice" not in admin_stack.accounts()
    scan.assert_absent([password_of(admin_stack, "alice")], caplog, capsys)


def test_mastodon_refusing_the_account_fails_with_exit_2(admin_stack, caplog, capsys):
    admin_stack.db_path.write_text(json.dumps({"accounts": {"carol": {
        "username": "carol", "email": "alice@example.org", "role": "Owner", "approved": True,
        "confirmed_at": "x", "password_digest": "d"}}}))
    scan = SecretScan(admin_stack.aws)

    execution = run(admin_stack, scan, ALICE)

    assert execution.status == "FAILED" and execution.error == "AdminTaskFailed"
    assert "exited with code 2" in execution.cause
    assert any("Email has already been taken" in m for _, _, m in admin_stack.aws.tasks.log_events)
    assert "alice" not in admin_stack.accounts()
    scan.assert_absent([password_of(admin_stack, "alice")], caplog, capsys)


def test_task_that_never_starts_fails_with_its_stop_reason(admin_stack, caplog, capsys):
    admin_stack.aws.tasks.on(admin_stack.admin_family, TaskResult.failed_to_start(
        "CannotPullContainerError: pull image manifest has been retried 5 time(s)"))
    scan = SecretScan(admin_stack.aws)

    execution = run(admin_stack, scan, ALICE)

    assert execution.status == "FAILED" and execution.error == "AdminTaskFailed"
    assert "never ran its container" in execution.cause and "TaskFailedToStart" in execution.cause
    assert "CannotPullContainerError" in execution.cause
    assert pending(admin_stack) == PENDING_PLACEHOLDER
    scan.assert_absent([password_of(admin_stack, "alice")], caplog, capsys)


# After the state times out, moto's own wait thread for the .sync integration dies on its timeout value
# (a moto 5.2 bug in a thread the execution no longer waits for); the execution result is unaffected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_task_timeout_fails_and_clears_the_pending_secret(admin_stack, caplog, capsys):
    name = f"{admin_stack.stack_name}-create_admin"
    env = {"STACK_NAME": admin_stack.stack_name, "ADMIN_PENDING_SECRET_ARN": admin_stack.pending_arn,
           "ADMIN_TASK_TIMEOUT_SECONDS": "1"}
    admin_stack.aws.route_function(name, LocalFunction("TimeoutCreateAdmin", ROOT / "functions/create_admin", "app.handler", env), env)
    release = threading.Event()  # the task runs until the execution has timed out: no race on timing
    admin_stack.aws.tasks.on(admin_stack.admin_family, lambda run: release.wait(30) and TaskResult(exit_code=0))
    scan = SecretScan(admin_stack.aws)

    execution = run(admin_stack, scan, ALICE)

    assert execution.status == "FAILED" and execution.error == "AdminTaskFailed", (execution.status, execution.error, execution.cause)
    assert "States.Timeout" in (execution.cause or ""), execution.cause
    assert pending(admin_stack) == PENDING_PLACEHOLDER
    password = password_of(admin_stack, "alice")
    release.set()
    deadline = time.monotonic() + 10  # let the simulated task finish inside moto before the mock stops
    while not admin_stack.aws.tasks.runs and time.monotonic() < deadline:
        time.sleep(0.05)
    scan.assert_absent([password], caplog, capsys)


def test_pending_secret_of_another_request_changes_nothing(admin_stack, caplog, capsys):
    sm = client("secretsmanager")

    def concurrent(task_run):
        # Another execution staged its own password after this one: ECS would inject that one.
        sm.put_secret_value(SecretId=admin_stack.pending_arn, SecretString=json.dumps(
            {"username": "alice", "password": "other-execution-password-123456", "request": "other-execution"}))
        from tootstack_dev.local.aws import resolve_secret_reference
        task_run.secrets = {s: resolve_secret_reference(v, admin_stack.aws.region) for s, v in (
            ("ADMIN_PASSWORD", f"{admin_stack.pending_arn}:password::"),
            ("ADMIN_PENDING_USERNAME", f"{admin_stack.pending_arn}:username::"),
            ("ADMIN_PENDING_REQUEST", f"{admin_stack.pending_arn}:request::"))}
        return run_admin_script(admin_stack, task_run)

    admin_stack.aws.tasks.on(admin_stack.admin_family, concurrent)
    scan = SecretScan(admin_stack.aws)

    execution = run(admin_stack, scan, ALICE)

    assert execution.status == "FAILED" and "exited with code 3" in execution.cause
    assert "alice" not in admin_stack.accounts()
    # The other request's staged secret is left alone for it.
    assert pending(admin_stack)["request"] == "other-execution"
    scan.assert_absent([password_of(admin_stack, "alice"), "other-execution-password-123456"], caplog, capsys)


BAD_INPUTS = [
    {"username": "alice smith", "email": "alice@example.org", "role": "Owner"},
    {"username": "a" * 31, "email": "alice@example.org", "role": "Owner"},
    {"username": "alice", "email": "alice-at-example.org", "role": "Owner"},
    {"username": "alice", "email": "alice@example.org", "role": "Superuser"},
    {"username": "alice", "email": "alice@example.org"},
    {"username": "alice", "email": "alice@example.org", "role": "Owner", "password": "x"},
]


def test_bad_input_fails_fast_with_no_side_effect(oneoff_stack):
    sm = client("secretsmanager")
    before = sorted(s["Name"] for s in sm.list_secrets()["SecretList"])
    pending_before = sm.get_secret_value(SecretId=oneoff_stack.pending_arn)["SecretString"]

    for bad in BAD_INPUTS:  # one stack for all: each execution is cheap, the stack is not
        execution = oneoff_stack.aws.run_state_machine(oneoff_stack.admin_sm, bad)

        assert execution.status == "FAILED" and execution.error == "InvalidInput", bad
        assert "invalid create-admin input" in execution.cause
        entered = [e["stateEnteredEventDetails"]["name"] for e in execution.history if "stateEnteredEventDetails" in e]
        assert entered == ["ValidateAndStorePassword"]
    assert sorted(s["Name"] for s in sm.list_secrets()["SecretList"]) == before
    assert sm.get_secret_value(SecretId=oneoff_stack.pending_arn)["SecretString"] == pending_before
    assert oneoff_stack.aws.tasks.runs == []

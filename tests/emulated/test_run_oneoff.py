"""The run-oneoff state machine in moto's Step Functions engine (LocalAws) with simulated toolbox tasks."""

import logging
import threading
import time

import pytest

from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.template import LocalFunction
from tootstack.oneoff.redact import WITHHELD

from tests.fixtures.oneoff import ROOT, SecretScan

MEDIA_USAGE = {"command": ["tootctl", "media", "usage"]}


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


def leaky_toolbox(run):
    """A command whose output happens to contain secrets the container holds."""
    return TaskResult(exit_code=0, log_lines=(
        "Attachments: 1.2 GB",
        f"connecting with password {run.secrets['DB_PASS']}",
        f"SECRET_KEY_BASE={run.secrets['SECRET_KEY_BASE']}",
        "New password: 4f1c2b7a9e",
        "Custom emoji: 3 MB",
    ))


def test_runs_the_allowed_command_and_withholds_secret_lines(oneoff_stack, caplog, capsys):
    oneoff_stack.aws.tasks.on(oneoff_stack.toolbox_family, leaky_toolbox)
    scan = SecretScan(oneoff_stack.aws)

    execution = oneoff_stack.aws.run_state_machine(oneoff_stack.oneoff_sm, MEDIA_USAGE)
    scan.executions.append(execution)

    assert execution.status == "SUCCEEDED", execution.cause
    report = execution.output
    assert report["exit_code"] == 0 and report["status"] == "succeeded"
    assert report["command"] == "tootctl media usage"
    assert report["log_group"] == f"/tootstack/{oneoff_stack.stack_name}/toolbox"
    assert report["log_stream"].startswith("toolbox/toolbox/")
    assert report["log_link"].startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/home")
    assert report["output_tail"] == ["Attachments: 1.2 GB", WITHHELD, WITHHELD, WITHHELD, "Custom emoji: 3 MB"]
    (task_run,) = oneoff_stack.aws.tasks.runs
    assert task_run.command == ["bin/tootctl", "media", "usage"]  # argv, exec form: no shell
    assert task_run.container_name == "toolbox"
    # The secrets did reach the (simulated) CloudWatch stream: the scan below must skip that one sink.
    assert any(oneoff_stack.secret_values["DB_PASS"] in m for _, _, m in oneoff_stack.aws.tasks.log_events)
    scan.extra["execution output"] = str(execution.output)
    sinks = scan.text_of_sinks(caplog, capsys)
    secret_values = [v for k, v in oneoff_stack.secret_values.items() if k != "VAPID_PUBLIC_KEY"] + ["4f1c2b7a9e"]
    for name in ("execution input/output/history", "python logging (caplog: messages, args, extra fields)",
                 "Powertools JSON log lines (caplog records, Lambda formatter)", "stdout/stderr (capsys)", "task commands", "task overrides", "execution output"):
        leaked = [v for v in secret_values if v in sinks[name]]
        assert not leaked, f"a secret value was echoed into {name}"


def test_non_zero_exit_fails_with_exit_code_log_stream_and_redacted_lines(oneoff_stack):
    def failing(run):
        return TaskResult(exit_code=1, log_lines=("Error: bucket not found", f"DB_PASS is {run.secrets['DB_PASS']}"))

    oneoff_stack.aws.tasks.on(oneoff_stack.toolbox_family, failing)

    execution = oneoff_stack.aws.run_state_machine(oneoff_stack.oneoff_sm, {"command": ["tootctl", "media", "remove", "--days", "7"]})

    assert execution.status == "FAILED" and execution.error == "OneOffCommandFailed"
    assert "tootctl media remove --days 7: exit code 1" in execution.cause
    assert "toolbox/toolbox/" in execution.cause and "Error: bucket not found" in execution.cause
    assert WITHHELD in execution.cause
    assert oneoff_stack.secret_values["DB_PASS"] not in execution.raw
    assert oneoff_stack.aws.tasks.runs[0].command == ["bin/tootctl", "media", "remove", "--days", "7"]


def test_task_that_never_starts_fails_with_the_reason(oneoff_stack):
    oneoff_stack.aws.tasks.on(oneoff_stack.toolbox_family, TaskResult.failed_to_start(
        "ResourceInitializationError: unable to pull secrets or registry auth"))

    execution = oneoff_stack.aws.run_state_machine(oneoff_stack.oneoff_sm, {"command": ["rails", "db:migrate"]})

    assert execution.status == "FAILED" and execution.error == "OneOffCommandFailed"
    assert "never ran" in execution.cause and "TaskFailedToStart" in execution.cause
    assert "ResourceInitializationError" in execution.cause
    assert oneoff_stack.aws.tasks.runs[0].command == ["bin/rails", "db:migrate"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # see test_create_admin
def test_task_timeout_fails_the_execution(oneoff_stack):
    name = f"{oneoff_stack.stack_name}-run_oneoff"
    env = {"STACK_NAME": oneoff_stack.stack_name, "ONEOFF_TASK_TIMEOUT_SECONDS": "1",
           "ONEOFF_SECRET_ARNS": f"{oneoff_stack.app_secret_arn},{oneoff_stack.db_secret_arn}"}
    oneoff_stack.aws.route_function(name, LocalFunction("TimeoutRunOneOff", ROOT / "functions/run_oneoff", "app.handler", env), env)
    release = threading.Event()  # the task runs until the execution has timed out: no race on timing
    oneoff_stack.aws.tasks.on(oneoff_stack.toolbox_family, lambda run: release.wait(30) and TaskResult(exit_code=0))

    execution = oneoff_stack.aws.run_state_machine(oneoff_stack.oneoff_sm, MEDIA_USAGE)

    assert execution.status == "FAILED" and execution.error == "OneOffCommandFailed", (execution.status, execution.error, execution.cause)
    assert "States.Timeout" in (execution.cause or "") and "no result within 1 seconds" in execution.cause, execution.cause
    release.set()
    deadline = time.monotonic() + 10  # let the simulated task finish inside moto before the mock stops
    while not oneoff_stack.aws.tasks.runs and time.monotonic() < deadline:
        time.sleep(0.05)


REFUSED = [
    (["tootctl", "accounts", "create", "eve", "--email", "e@x.org"], "use the create-admin state machine"),
    (["tootctl", "accounts", "modify", "eve", "--reset-password"], "--reset-password"),
    (["bash", "-c", "env"], "program not allowed"),
    ("tootctl media usage", "not a string"),
    (["rails", "secret"], "rails task not allowed"),
]


def test_refused_commands_run_nothing(oneoff_stack):
    for command, expected in REFUSED:  # one stack for all: each execution is cheap, the stack is not
        execution = oneoff_stack.aws.run_state_machine(oneoff_stack.oneoff_sm, {"command": command})

        assert execution.status == "FAILED" and execution.error == "InvalidInput", command
        assert expected in execution.cause
    assert oneoff_stack.aws.tasks.runs == []

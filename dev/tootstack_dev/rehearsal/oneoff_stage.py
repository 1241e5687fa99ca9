"""Rehearsal stage "one-off": the deployed run-oneoff state machine runs an allowed tootctl command.

The simulated toolbox prints a line holding the database password and one holding a per-user admin
password (`<stack>/admin/<user>`, what create-admin stores): the report must withhold both, which the
function can only do with its grants on the stack's secrets and the `<stack>/admin/*` prefix. A refused
command must run no task.
"""

from __future__ import annotations

import json

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.rehearsal.day2_common import toolbox_behavior

NAME = "one-off"
COMMAND = ["tootctl", "media", "usage"]


def run(ctx) -> str:
    arn = ctx.physical("RunOneOffStateMachine")
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    admin_name = f"{ctx.stack_name}/admin/rehearsal_oneoff"
    admin_password = "oneoff-admin-" + "5d2e" * 6
    try:
        sm.create_secret(Name=admin_name, SecretString=json.dumps({"username": "rehearsal_oneoff", "password": admin_password}))
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=admin_name, SecretString=json.dumps({"username": "rehearsal_oneoff", "password": admin_password}))
    commands: list[list[str]] = []

    def toolbox(task_run) -> TaskResult:
        commands.append(list(task_run.command))
        db_password = task_run.secrets.get("DB_PASS", "")
        return TaskResult(0, ["Attachments: 1.2 GB", f"debug: {db_password}", f"debug: {admin_password}", "Custom emoji: 3 MB"])

    try:
        with toolbox_behavior(ctx, toolbox):
            done = ctx.aws.run_state_machine(arn, {"command": COMMAND}, timeout=30)
            if done.status != "SUCCEEDED":
                raise TootstackError(f"run-oneoff {COMMAND}: {done.status} {done.error or ''} {done.cause or ''}")
            tail = (done.output or {}).get("output_tail", [])
            if any(admin_password in line for line in tail) or len(tail) != 4 or tail[0] != "Attachments: 1.2 GB":
                raise TootstackError(f"one-off output not redacted as expected: {len(tail)} lines")
            if any("debug:" in line for line in tail):
                raise TootstackError("a secret line reached the one-off report")
            refused = ctx.aws.run_state_machine(arn, {"command": ["rails", "console"]}, timeout=30)
            if refused.status != "FAILED" or len(commands) != 1:
                raise TootstackError(f"a refused command ran or was not refused: {refused.status}, {len(commands)} tasks")
    finally:
        sm.delete_secret(SecretId=admin_name, ForceDeleteWithoutRecovery=True)
    return (f"`{' '.join(COMMAND)}` ran as a toolbox task (exit 0); the database and admin passwords it printed "
            "were withheld from the report; `rails console` refused without a task")

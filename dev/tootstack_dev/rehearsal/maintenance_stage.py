"""Rehearsal stage "maintenance": the scheduled maintenance state machine, as its schedule would start it.

moto does not run EventBridge Scheduler schedules, so this stage starts the schedule's target (the
deployed MaintenanceStateMachine, input {}) itself: the gate Lambda (routed to its real handler) checks
halts and the upgrade lock, then the toolbox tasks run (simulated) with the tootctl commands. Then the
upgrade lock is taken and the run must be skipped, and an input below Mastodon's minimum refused.
"""

from __future__ import annotations

import json

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.rehearsal.day2_common import toolbox_behavior

NAME = "maintenance"


def run(ctx) -> str:
    arn = ctx.physical("MaintenanceStateMachine")
    commands: list[list[str]] = []

    def toolbox(run) -> TaskResult:
        commands.append(list(run.command))
        return TaskResult(0, [f"{' '.join(run.command[1:3])}: removed 0 items"])

    ssm = boto3.client("ssm", region_name=ctx.region)
    lock = f"/{ctx.stack_name}/upgrade/lock"
    with toolbox_behavior(ctx, toolbox):
        done = ctx.aws.run_state_machine(arn, {}, timeout=30)
        if done.status != "SUCCEEDED" or (done.output or {}).get("status") != "done":
            raise TootstackError(f"scheduled run: {done.status} {done.error or ''} {done.cause or ''} {done.output}")
        expected = [["bin/tootctl", "media", "remove", "--days"], ["bin/tootctl", "preview_cards", "remove", "--days"]]
        if [c[:4] for c in commands] != expected:
            raise TootstackError(f"unexpected maintenance commands {commands}")
        ran = [" ".join(c) for c in commands]
        ssm.put_parameter(Name=lock, Type="String", Value=json.dumps({"version": "rehearsal", "execution": "rehearsal"}), Overwrite=True)
        try:
            skipped = ctx.aws.run_state_machine(arn, {}, timeout=30)
        finally:
            ssm.delete_parameter(Name=lock)
        if (skipped.output or {}).get("status") != "skipped" or len(commands) != 2:
            raise TootstackError(f"run under the upgrade lock was not skipped: {skipped.status} {skipped.output}")
        refused = ctx.aws.run_state_machine(arn, {"preview_cards_days": 7}, timeout=30)
        if refused.status != "FAILED" or refused.error != "InvalidInput" or len(commands) != 2:
            raise TootstackError(f"preview_cards_days=7 was not refused: {refused.status} {refused.error}")
    return (f"scheduled run ran {len(ran)} toolbox tasks ({'; '.join(ran)}); skipped under the upgrade lock; "
            "preview_cards_days=7 refused (minimum 14)")

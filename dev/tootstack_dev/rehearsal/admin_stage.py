"""Rehearsal stage "create-admin": the create-admin state machine against the moto-deployed stack.

The deployed state machine (made runnable by the deploy stage: DefinitionSubstitutions applied), the
deployed Lambda function (routed to its real handler, with the environment CloudFormation resolved) and
the deployed AdminTaskDefinition and pending secret are used.

The simulated admin container checks that ECS `secrets` gave it the password that the per-user secret
holds (and that neither its command nor its environment did), then reports "created". A second run
must report the account as existing. Every captured sink is scanned for the password.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.rehearsal.day2_common import task_behavior

NAME = "create-admin"
USERNAME = "rehearsal_admin"
STATE_MACHINE = "CreateAdminStateMachine"
FUNCTION = "CreateAdminFunction"
TASK_DEFINITION = "AdminTaskDefinition"


def run(ctx: RehearsalContext) -> str:
    ids = ctx.physical_ids
    missing = [x for x in (FUNCTION, TASK_DEFINITION, "AdminPendingSecret") if x not in ids]
    if missing:
        raise TootstackError(f"the deployed stack lacks {', '.join(missing)}: template.yaml's admin section is missing")
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    secret_name = f"{ctx.stack_name}/admin/{USERNAME}"
    seen: dict[str, Any] = {}

    def admin_container(task_run: Any) -> Any:
        from tootstack_dev.local.aws import TaskResult

        stored = sm.get_secret_value(SecretId=secret_name)["SecretString"]
        injected = task_run.secrets.get("ADMIN_PASSWORD")
        seen.update(
            got_secret=injected == stored,
            in_environment="ADMIN_PASSWORD" in task_run.environment or stored in json.dumps(task_run.environment),
            in_command=stored in json.dumps(task_run.command) or stored in json.dumps(task_run.overrides),
            runner=task_run.command[:2],
            request_matches=task_run.secrets.get("ADMIN_PENDING_REQUEST") == task_run.environment.get("ADMIN_REQUEST"),
        )
        if not (seen["got_secret"] and seen["request_matches"]):
            return TaskResult(exit_code=1, log_lines=("tootstack create-admin: failed: no usable pending secret",))
        existed = seen.get("runs", 0) > 0
        seen["runs"] = seen.get("runs", 0) + 1
        if existed:
            return TaskResult(exit_code=10, log_lines=(f"tootstack create-admin: @{USERNAME} existed: password unchanged",))
        return TaskResult(exit_code=0, log_lines=(f"tootstack create-admin: created @{USERNAME} as Owner, confirmed and approved",))

    # Afterwards later stages (first boot, if it runs after this one) see the secrets as they were.
    with task_behavior(ctx, TASK_DEFINITION, admin_container) as filled:
        return _rehearse(ctx, sm, seen, filled)


def _rehearse(ctx: RehearsalContext, sm: Any, seen: dict[str, Any], filled: list[str]) -> str:
    arn = ctx.physical(STATE_MACHINE)
    domain = ctx.parameters.get("DomainName") or "rehearsal.test"
    data = {"username": USERNAME, "email": f"admin@{domain}", "role": "Owner"}
    first = ctx.aws.run_state_machine(arn, data)
    if first.status != "SUCCEEDED":
        raise TootstackError(f"create-admin {first.status}: {first.error}: {first.cause}")
    if first.output.get("status") != "created" or not first.output.get("password_secret_arn"):
        raise TootstackError(f"create-admin reported {first.output.get('status')!r}, expected 'created'")
    if not seen.get("got_secret") or seen.get("in_environment") or seen.get("in_command"):
        raise TootstackError("the admin task did not get the password through ECS secrets only")
    if seen.get("runs") != 1 or seen.get("runner") != ["bin/rails", "runner"]:
        raise TootstackError(f"the admin task ran unexpectedly: {seen.get('runner')}")
    second = ctx.aws.run_state_machine(arn, data)
    if second.status != "SUCCEEDED" or second.output.get("status") != "existing":
        raise TootstackError(f"re-run of create-admin: {second.status} {second.error or ''} {(second.output or {}).get('status')}")

    password = sm.get_secret_value(SecretId=first.output["password_secret_arn"])["SecretString"]
    sinks = {
        "execution history/input/output": first.raw + second.raw,
        "task log events": "\n".join(m for _, _, m in ctx.aws.tasks.log_events),
        "task commands and overrides": json.dumps([(r.command, r.overrides, r.environment) for r in ctx.aws.tasks.runs], default=str),
        "stack outputs": json.dumps(ctx.outputs),
    }
    leaked = [name for name, text in sinks.items() if password in text]
    if leaked:
        raise TootstackError(f"the admin password appears in: {', '.join(leaked)}")
    pending = json.loads(sm.get_secret_value(SecretId=ctx.physical_ids["AdminPendingSecret"])["SecretString"])
    if pending.get("password"):
        raise TootstackError("the pending admin secret still holds a password after the execution")
    scanned = sum(len(t) for t in sinks.values())
    names = sorted({item.rsplit("/", 1)[-1].rsplit("-", 1)[0] for item in filled})
    note = ("; secrets no first-boot stage had filled got rehearsal placeholders: " + ", ".join(names)) if filled else ""
    return (
        f"@{USERNAME} created (exit 0) then reported existing on re-run; the task got the password via ECS "
        f"secrets only; ran the deployed state machine; no password in {scanned} characters of history, task logs, commands and outputs{note}"
    )


"""Rehearsal stage "db-setup": the deployed first-boot state machine in moto's Step Functions engine.

Ensure secrets -> (mirror skipped: the "mirror" stage proves it) -> Redis auth setup -> `rails
db:prepare` through ecs:runTask.sync on the toolbox task definition -> services scaled from 0. The
simulated toolbox task is a stand-in Mastodon container: with the secrets ECS injects from the task
definition (REDIS_USER/REDIS_PASSWORD from RedisSecret, the app and database secrets), it must AUTH to
the real redis-server over TLS, else it exits 1 as Rails would. A re-run must succeed and change
nothing; the execution histories, task commands and task logs must hold no secret value.
"""

from __future__ import annotations

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.rehearsal.first_boot_stage import leaks, mastodon_connects, route_redis_functions

NAME = "db-setup"
NEEDED = ("SECRET_KEY_BASE", "OTP_SECRET", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY", "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
          "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "DB_PASS",
          "REDIS_USER", "REDIS_PASSWORD", "SMTP_LOGIN", "SMTP_PASSWORD")


def run(ctx) -> str:
    route_redis_functions(ctx)
    ecs = boto3.client("ecs", region_name=ctx.region)
    toolbox = ecs.describe_task_definition(taskDefinition=ctx.physical("ToolboxTaskDefinition"))["taskDefinition"]
    seen: list[str] = []

    def mastodon_task(task) -> TaskResult:
        missing = [name for name in NEEDED if not task.secrets.get(name)]
        if missing:
            return TaskResult(exit_code=1, log_lines=[f"missing environment: {', '.join(missing)}"])
        if not mastodon_connects(ctx, task.secrets["REDIS_USER"], task.secrets["REDIS_PASSWORD"]):
            return TaskResult(exit_code=1, log_lines=["Redis::CommandError: WRONGPASS invalid username-password pair or user is disabled."])
        seen.append(" ".join(task.command))
        return TaskResult(exit_code=0, log_lines=["Redis: AUTH ok (TLS)", f"ran: {' '.join(task.command)}"])

    with ctx.aws.tasks.behaving(toolbox["family"], mastodon_task):   # later stages set their own
        state_machine = ctx.physical("FirstBootStateMachine")
        first = ctx.aws.run_state_machine(state_machine, {"skip_mirror": True}, timeout=60)
        if first.status != "SUCCEEDED":
            raise TootstackError(f"first boot {first.status}: {first.error}: {(first.cause or '')[:300]}")
        services = {s["service"]: s["desired"] for s in first.output["services"]}
        if not seen or seen[0] != "bundle exec rails db:prepare":
            raise TootstackError(f"the toolbox task did not run db:prepare with working Redis credentials (ran: {seen})")
        if not any(services.values()):
            raise TootstackError("no service was scaled up")
        second = ctx.aws.run_state_machine(state_machine, {"skip_mirror": True}, timeout=60)
        if second.status != "SUCCEEDED" or any(s["changed"] for s in second.output["services"]):
            changed = [s["service"] for s in (second.output or {}).get("services", []) if s["changed"]]
            raise TootstackError(f"re-run of first boot did not resume cleanly: {second.status} {second.error or ''} changed again: {changed}")
        if second.output["secrets_generated"] != "none":
            raise TootstackError("re-run of first boot generated secrets")
    commands = " ".join(" ".join(r.command) for r in ctx.aws.tasks.runs)
    logs = " ".join(message for _, _, message in ctx.aws.tasks.log_events)
    leaked = leaks(ctx, first.raw, second.raw, commands, logs, str(ctx.outputs))
    if leaked:
        raise TootstackError(f"{leaked} secret values found in execution histories, task commands, logs or outputs")
    scaled = ", ".join(f"{name}={count}" for name, count in services.items())
    return (f"first boot SUCCEEDED: toolbox ran `rails db:prepare` and AUTHed to Redis (TLS) with the injected secrets; "
            f"services scaled from 0: {scaled}; re-run SUCCEEDED with nothing changed; 0 secret values in "
            f"{len(first.history) + len(second.history)} history events, task commands, logs or stack outputs")

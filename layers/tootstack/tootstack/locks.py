"""Execution locks in SSM: one workflow execution at a time (first boot, the upgrade).

A lock is a String parameter holding a JSON object naming its holder: {"execution": <name>,
"execution_arn": <arn>, "since": <epoch>}, plus what the workflow records with it (the upgrade: its
version and the bridge minimum to give back). PutParameter with Overwrite=False is the atomic take. A
lock whose holder is no longer RUNNING (stopped from the console, failed before its release step, gone)
is stale: the next execution takes it over. A holder whose state cannot be told keeps its lock, and a
lock that cannot be read is an error, never "unlocked". The maintenance gate reads the upgrade lock with
the same primitives (`read_lock`, `holder_state`).
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from tootstack.errors import DependencyUnavailable, TootstackError, aws_error_code

__all__ = ["FirstBootInProgress", "acquire", "holder_arn", "holder_state", "read_lock", "release", "take"]


class FirstBootInProgress(TootstackError):
    """Another first-boot execution is running: two would both run `rails db:prepare` on a fresh database."""


def read_lock(ssm: Any, name: str) -> dict[str, Any] | None:
    """The lock held in parameter `name` when held, else None (absent, "" or "none"). An SSM failure
    raises DependencyUnavailable: an unreadable lock must never look like "unlocked"."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None
    except (ClientError, BotoCoreError) as exc:
        raise DependencyUnavailable(f"cannot read the lock {name}: {type(exc).__name__}") from None
    if value.strip().lower() in ("", "none"):
        return None
    try:
        held = json.loads(value)
    except ValueError:
        return {"execution": value}
    return held if isinstance(held, dict) else {"execution": str(held)}


def holder_arn(held: dict[str, Any], any_execution_arn: str = "") -> str | None:
    """The execution ARN of the lock's holder: recorded in the lock, or (a lock written before the ARN was
    recorded) built from its name and the ARN of another execution of the same state machine."""
    if held.get("execution_arn"):
        return str(held["execution_arn"])
    name = held.get("execution")
    if name and ":execution:" in any_execution_arn:
        return any_execution_arn.rsplit(":", 1)[0] + f":{name}"
    return None


def holder_state(sfn: Any, held: dict[str, Any], any_execution_arn: str = "") -> str | None:
    """The holder execution's status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED; "GONE" when Step
    Functions no longer knows it), or None when it cannot be told (no Step Functions client, or a lock
    that names no execution we can find): then the lock counts as held. An unreadable status is an error,
    never "not running"."""
    from botocore.exceptions import BotoCoreError, ClientError

    arn = holder_arn(held, any_execution_arn)
    if sfn is None or arn is None:
        return None
    try:
        return str(sfn.describe_execution(executionArn=arn)["status"])
    except ClientError as exc:
        if aws_error_code(exc) == "ExecutionDoesNotExist":
            return "GONE"
        raise DependencyUnavailable(f"cannot tell whether the lock's holder runs: {type(exc).__name__}") from None
    except BotoCoreError as exc:
        raise DependencyUnavailable(f"cannot tell whether the lock's holder runs: {type(exc).__name__}") from None


def take(ssm: Any, sfn: Any, parameter: str, lock: dict[str, Any], *, mine: Callable[[dict[str, Any]], bool],
         refuse: Callable[[dict[str, Any]], TootstackError], execution_arn: str = "",
         on_stale: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
    """Write `lock` into `parameter` unless another execution that is RUNNING (or cannot be told) holds it:
    then raise `refuse(held)`. A lock `mine(held)` says is this execution's is taken again (idempotent).
    A stale holder is handed to `on_stale` (undo what it held) and replaced; returns
    {"execution", "status"} of the replaced holder, else None."""
    try:
        ssm.put_parameter(Name=parameter, Value=json.dumps(lock), Type="String", Overwrite=False)
        return None
    except ssm.exceptions.ParameterAlreadyExists:
        pass
    held = read_lock(ssm, parameter)
    recovered = None
    if held is not None and not mine(held):
        state = holder_state(sfn, held, execution_arn)
        if state in (None, "RUNNING"):
            raise refuse(held)
        if on_stale is not None:
            on_stale(held)
        recovered = {"execution": held.get("execution"), "status": state}
    ssm.put_parameter(Name=parameter, Value=json.dumps(lock), Type="String", Overwrite=True)
    return recovered


def acquire(ssm: Any, sfn: Any, parameter: str, execution_arn: str, held_error: type[TootstackError],
            now: float | None = None) -> dict[str, Any]:
    """Take the lock for `execution_arn`; idempotent for the same execution. Returns {"taken": True} and,
    when a stale holder was replaced, "recovered": {"execution", "status"}. Raises `held_error` while
    another execution that is RUNNING (or cannot be told) holds it."""
    lock = {"execution": execution_arn.rsplit(":", 1)[-1], "execution_arn": execution_arn,
            "since": int(time.time() if now is None else now)}
    recovered = take(ssm, sfn, parameter, lock, execution_arn=execution_arn,
                     mine=lambda held: held.get("execution_arn") == execution_arn,
                     refuse=lambda held: held_error(
                         f"{held.get('execution')} is running (lock {parameter}, since {held.get('since')}); "
                         "wait for it to end, then start again if it failed"))
    return {"taken": True, **({"recovered": recovered} if recovered else {})}


def release(ssm: Any, parameter: str, execution_arn: str) -> bool:
    """Drop the lock if this execution holds it (never another's)."""
    held = read_lock(ssm, parameter)
    if held is None or held.get("execution_arn") != execution_arn:
        return False
    ssm.delete_parameter(Name=parameter)
    return True

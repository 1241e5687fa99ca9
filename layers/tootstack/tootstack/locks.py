"""Execution locks in SSM: one workflow execution at a time (first boot; the upgrade has its own record).

The lock is a String parameter holding {"execution": <name>, "execution_arn": <arn>, "since": <epoch>}.
PutParameter with Overwrite=False is the atomic take. A lock whose holder is no longer RUNNING
(stopped from the console, failed before its release step, gone) is stale: the next execution takes it
over. A holder whose state cannot be told keeps its lock.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tootstack.errors import TootstackError
from tootstack.upgrade.steps import holder_state, read_lock


class FirstBootInProgress(TootstackError):
    """Another first-boot execution is running: two would both run `rails db:prepare` on a fresh database."""


def acquire(ssm: Any, sfn: Any, parameter: str, execution_arn: str, held_error: type[TootstackError],
            now: float | None = None) -> dict[str, Any]:
    """Take the lock for `execution_arn`; idempotent for the same execution. Returns {"taken": True} and,
    when a stale holder was replaced, "recovered": {"execution", "status"}. Raises `held_error` while
    another execution that is RUNNING (or cannot be told) holds it."""
    lock = {"execution": execution_arn.rsplit(":", 1)[-1], "execution_arn": execution_arn,
            "since": int(time.time() if now is None else now)}
    result: dict[str, Any] = {"taken": True}
    try:
        ssm.put_parameter(Name=parameter, Value=json.dumps(lock), Type="String", Overwrite=False)
        return result
    except ssm.exceptions.ParameterAlreadyExists:
        pass
    held = read_lock(ssm, parameter)
    if held is not None and held.get("execution_arn") != execution_arn:
        state = holder_state(sfn, held, execution_arn)
        if state in (None, "RUNNING"):
            raise held_error(f"{held.get('execution')} is running (lock {parameter}, since {held.get('since')}); "
                             "wait for it to end, then start again if it failed")
        result["recovered"] = {"execution": held.get("execution"), "status": state}
    ssm.put_parameter(Name=parameter, Value=json.dumps(lock), Type="String", Overwrite=True)
    return result


def release(ssm: Any, parameter: str, execution_arn: str) -> bool:
    """Drop the lock if this execution holds it (never another's)."""
    held = read_lock(ssm, parameter)
    if held is None or held.get("execution_arn") != execution_arn:
        return False
    ssm.delete_parameter(Name=parameter)
    return True

"""Start the first-boot state machine once per stack (from a custom resource on stack creation).

The execution name is derived from the stack id, so a retried Create cannot start a second execution
(StartExecution with an existing name and the same input returns the running/finished one). Updates and
deletes start nothing: re-run first boot from the Step Functions console instead (every step is
idempotent).
"""

from __future__ import annotations

import hashlib
from typing import Any

from tootstack.errors import InvalidInput


def execution_name(stack_id: str) -> str:
    return "first-boot-" + hashlib.sha256(stack_id.encode()).hexdigest()[:24]


def start_first_boot(sfn: Any, state_machine_arn: str, stack_id: str) -> str:
    if not state_machine_arn.startswith("arn:"):
        raise InvalidInput("StartStateMachineArn must be a state machine ARN")
    name = execution_name(stack_id)
    try:
        return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input="{}")["executionArn"]
    except sfn.exceptions.ExecutionAlreadyExists:
        return state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name

"""The first-boot lock function's event (statemachines/first_boot.asl.json -> functions/first_boot_lock):
{"Action": "lock"|"unlock", "Execution": <the execution ARN, $$.Execution.Id>}, parsed once by the handler."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import StringConstraints

from tootstack.contracts import Event, parse


class FirstBootLock(Event):
    Action: Literal["lock", "unlock"]
    Execution: Annotated[str, StringConstraints(pattern=r"^arn:")]    # the lock's holder


def parse_lock_request(event: Any) -> FirstBootLock:
    return parse(FirstBootLock, event, "first-boot lock request")

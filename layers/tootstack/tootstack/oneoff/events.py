"""The one-off state machines' contracts with their Lambdas: create-admin (statemachines/create_admin.asl.json
-> functions/create_admin) and run-oneoff (statemachines/run_oneoff.asl.json -> functions/run_oneoff).

One model per action, discriminated by `action`, parsed once by the handler. The console input itself
(`input`) keeps its own validation with its own messages (`admin.validate_admin_request`,
`oneoff.validate_input`), since it is what an operator types; these models fix the envelope the state
machine builds around it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import ConfigDict, Field, StringConstraints

from tootstack.contracts import Event, parse

Name = Annotated[str, StringConstraints(min_length=1)]


class StepError(Event):
    """A Catch's ResultPath ($.error): what Step Functions writes for a failed state."""

    Error: str = ""
    Cause: str = ""


class AdminPrepared(Event):
    """The prepare step's result as the state machine keeps it ($.prepared); more keys pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)
    request: Name
    username: Name
    secret_arn: Name
    role: Name


class AdminState(Event):
    prepared: AdminPrepared
    task: Optional[dict[str, Any]] = None     # the ecs:runTask.sync result ($.task)
    error: Optional[StepError] = None         # a Catch's error ($.error)


class AdminPrepare(Event):
    action: Literal["prepare"]
    input: Any = None                         # the console input: admin.validate_admin_request checks it
    request: Name                             # $$.Execution.Name


class AdminFinish(Event):
    action: Literal["finish"]
    outcome: Literal["created", "existing", "password_reset", "failed"]
    state: AdminState


AdminEvent = Annotated[Union[AdminPrepare, AdminFinish], Field(discriminator="action")]


def parse_admin_event(event: Any) -> AdminPrepare | AdminFinish:
    return parse(AdminEvent, event, "create-admin event")


class OneoffState(Event):
    """The execution's state at the report step: validated ($.validated), task or error."""

    validated: Optional[dict[str, Any]] = None
    task: Optional[dict[str, Any]] = None
    error: Optional[StepError] = None


class OneoffValidate(Event):
    action: Literal["validate"]
    input: Any = None                         # the console input: oneoff.validate_input checks it


class OneoffReport(Event):
    action: Literal["report"]
    state: Optional[OneoffState] = None       # null or absent: an empty state


OneoffEvent = Annotated[Union[OneoffValidate, OneoffReport], Field(discriminator="action")]


def parse_oneoff_event(event: Any) -> OneoffValidate | OneoffReport:
    return parse(OneoffEvent, event, "run-oneoff event")

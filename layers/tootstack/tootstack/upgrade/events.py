"""The upgrade state machine's contract with its Lambda (statemachines/upgrade.asl.json -> functions/upgrade).

One model per step, discriminated by `action`; `parse_step(event)` is the handler's only parsing.
The payloads carry names, ARNs, digests and counts, never a secret.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, StringConstraints

from tootstack.contracts import Event, parse
from tootstack.upgrade.version import VERSION_RE

Version = Annotated[str, StringConstraints(pattern=f"^{VERSION_RE.pattern}$")]
Name = Annotated[str, StringConstraints(min_length=1)]


class FamilyRevisions(Event):
    previous: Name
    target: Name


class Plan(Event):
    """What `register` returns and every later step reads: each service's current and new revision."""

    previous: dict[str, Name]
    target: dict[str, Name]
    toolbox: str = ""
    families: dict[str, FamilyRevisions] = Field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class Prepare(Event):
    action: Literal["prepare"]
    input: Any = None                  # the console input, checked by steps.prepare ({"version": "v4.5.3"})
    execution: Name                    # $$.Execution.Name: the lock's holder
    execution_arn: str = ""            # $$.Execution.Id: lets a later upgrade see whether the holder still runs


class Mirror(Event):
    action: Literal["mirror"]
    version: Version


class Register(Event):
    action: Literal["register"]
    version: Version
    pinned: dict[str, Name]            # image role -> digest-pinned reference (the mirror step's result)


class Deploy(Event):
    action: Literal["deploy"]
    plan: Plan
    execution: str = ""


class Check(Event):
    action: Literal["check"]
    plan: Plan
    checks: Annotated[int, Field(ge=0)] = 0
    phase: Literal["bridge", "all"] = "all"


class Rollback(Event):
    action: Literal["rollback"]
    plan: Plan


class Finish(Event):
    action: Literal["finish"]
    version: Version
    execution: Name


class Release(Event):
    action: Literal["release"]
    execution: Name


UpgradeStep = Annotated[Union[Prepare, Mirror, Register, Deploy, Check, Rollback, Finish, Release],
                        Field(discriminator="action")]


def parse_step(event: Any) -> Prepare | Mirror | Register | Deploy | Check | Rollback | Finish | Release:
    return parse(UpgradeStep, event, "upgrade step")

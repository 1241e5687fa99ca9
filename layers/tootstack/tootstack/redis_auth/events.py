"""The Redis rotation function's event shapes (functions/redis_rotation), one model each:

- `RotationStep`: Secrets Manager's rotation event {"Step", "SecretId", "ClientRequestToken"}
  (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html;
  Powertools' `SecretsManagerEvent` data class reads the same four steps);
- `Setup` ({"Action": "setup"}, the first-boot state machine) and `Resume` ({"Action": "resume"}, the
  console, to finish an interrupted rotation), discriminated by `Action`.
`parse_rotation_event` is the function's only parsing; none of these carries a password.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, StringConstraints

from tootstack.contracts import Event, parse
from tootstack.errors import InvalidInput

Name = Annotated[str, StringConstraints(min_length=1)]


class RotationStep(Event):
    Step: Literal["createSecret", "setSecret", "testSecret", "finishSecret"]
    SecretId: Name
    ClientRequestToken: Name
    RotationToken: Optional[str] = None      # sent by Secrets Manager for cross-account rotation; unused here


class Setup(Event):
    Action: Literal["setup"]


class Resume(Event):
    Action: Literal["resume"]


Console = Annotated[Union[Setup, Resume], Field(discriminator="Action")]


def parse_rotation_event(event: Any) -> RotationStep | Setup | Resume:
    if isinstance(event, dict) and "Step" in event:
        return parse(RotationStep, event, "rotation event")
    if isinstance(event, dict) and "Action" in event:
        return parse(Console, event, "rotation request")
    raise InvalidInput('expected a rotation event (Step, SecretId, ClientRequestToken) or {"Action": "setup"} or {"Action": "resume"}')

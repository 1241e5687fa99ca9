"""The secrets bootstrap function's three event shapes (functions/secrets_bootstrap), one model each:

- a direct request from the first-boot state machine or the console, discriminated by `Action`:
  `Bootstrap` ({"Action": "bootstrap"}) and `FirstBootLock` ({"Action": "lock"|"unlock", "Execution": ARN});
- the custom resource Custom::SecretsBootstrap, properties `SecretsBootstrapProperties`;
- the custom resource Custom::FirstBootStart, properties `FirstBootStartProperties`.
Custom resource requests are read through tootstack.cfn_custom.parse_request. None carries a secret value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, StringConstraints

from tootstack.contracts import Event, parse

Name = Annotated[str, StringConstraints(min_length=1)]
Arn = Annotated[str, StringConstraints(pattern=r"^arn:")]


class Bootstrap(Event):
    Action: Literal["bootstrap"]


class FirstBootLock(Event):
    Action: Literal["lock", "unlock"]
    Execution: Arn                                   # $$.Execution.Id: the lock's holder


Direct = Annotated[Union[Bootstrap, FirstBootLock], Field(discriminator="Action")]


def parse_direct(event: Any) -> Bootstrap | FirstBootLock:
    return parse(Direct, event, "secrets bootstrap request")


class SecretsBootstrapProperties(Event):
    """Custom::SecretsBootstrap: the secrets to fill (BootstrapConfig.from_properties checks the pairs)."""

    AppSecretArn: Name
    DatabaseSecretArn: Name
    RedisSecretArn: Name
    SmtpSecretArn: Optional[str] = None
    SmtpUserName: Optional[str] = None
    SesRegion: Optional[str] = None
    DatabaseUsername: Optional[str] = None
    RedisUsername: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class FirstBootStartProperties(Event):
    """Custom::FirstBootStart: the state machine to start once, on stack creation."""

    StartStateMachineArn: Arn

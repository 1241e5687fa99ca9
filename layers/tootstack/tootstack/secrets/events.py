"""The secrets bootstrap function's three event shapes (functions/secrets_bootstrap), one model each:

- `Bootstrap`: {"Action": "bootstrap"}, a direct request from the first-boot state machine or the console;
- the custom resource Custom::SecretsBootstrap, properties `SecretsBootstrapProperties`;
- the custom resource Custom::FirstBootStart, properties `FirstBootStartProperties`.
Custom resource requests are read through tootstack.cfn_custom.parse_request. None carries a secret value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import StringConstraints

from tootstack.contracts import Event, parse

Name = Annotated[str, StringConstraints(min_length=1)]
Arn = Annotated[str, StringConstraints(pattern=r"^arn:")]


class Bootstrap(Event):
    Action: Literal["bootstrap"]


def parse_direct(event: Any) -> Bootstrap:
    return parse(Bootstrap, event, "secrets bootstrap request")


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

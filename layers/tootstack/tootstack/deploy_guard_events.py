"""The deploy guard's custom resources (template.yaml -> functions/deploy_guard): one properties model per
resource type, read by tootstack.cfn_custom.parse_request. CloudFormation sends every scalar property as a
string; ServiceToken and any other extra property are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from tootstack.contracts import Event

Name = Annotated[str, StringConstraints(min_length=1)]


class ServiceCounts(Event):
    """Custom::ServiceCounts -> Data {Key: desired count}."""

    ClusterName: Name
    Services: dict[str, Name] = Field(default_factory=dict)       # Data key -> service name


class VersionGuard(Event):
    """Custom::VersionGuard: FAILED (with the samconfig.toml values) when the images are older than the
    running version."""

    ClusterName: Name
    Services: list[Name] = Field(default_factory=list)
    VersionParameter: Name
    Images: dict[str, str] = Field(default_factory=dict)          # stack parameter -> image reference
    TaskDefinitions: list[Any] = Field(default_factory=list)      # only there to make CloudFormation send an Update


class CoreBridge(Event):
    """Custom::CoreBridge: one web task serves while the core task restarts."""

    ClusterName: Name
    CoreService: Name
    BridgeService: Name
    CoreTaskDefinition: Name
    RecordParameter: Name


class CoreBridgeRelease(Event):
    """Custom::CoreBridgeRelease: gives the bridge back after the core moved."""

    ClusterName: Name
    RecordParameter: Name
    Token: str = ""


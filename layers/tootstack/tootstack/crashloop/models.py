"""Pydantic models (Powertools Parser style) for every event the crashloop detector reads.

`parse_invocation(event)` is the detector handler's only parsing: one of the two ECS events below, or
an `action` request (`Resume` from the console, `Nudge` from the detector's own EventBridge Scheduler
schedules), each its own model.

Shapes follow what EventBridge delivers for source `aws.ecs` (see docs/crashloop.md):
"ECS Task State Change" (a task's status; `stopCode`/`stoppedReason`/containers' `exitCode` once it
stopped) and "ECS Deployment State Change" (a service deployment started, completed, failed).
Unknown fields are kept (ECS adds fields over time); only what the detector reads is declared.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints, ValidationError

from tootstack.contracts import Event, parse
from tootstack.errors import InvalidInput

TASK_STATE_CHANGE = "ECS Task State Change"
DEPLOYMENT_STATE_CHANGE = "ECS Deployment State Change"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EcsContainer(_Lenient):
    name: str
    exitCode: Optional[int] = None  # absent when the container never started
    reason: Optional[str] = None
    lastStatus: Optional[str] = None
    containerArn: Optional[str] = None


class EcsTaskDetail(_Lenient):
    clusterArn: str
    taskArn: str
    taskDefinitionArn: str
    group: Optional[str] = None            # "service:NAME" for service tasks, "family:NAME" for RunTask
    startedBy: Optional[str] = None        # "ecs-svc/<deployment number>" for service tasks
    lastStatus: str
    desiredStatus: Optional[str] = None
    stopCode: Optional[str] = None
    stoppedReason: Optional[str] = None
    stoppedAt: Optional[datetime] = None
    stoppingAt: Optional[datetime] = None
    createdAt: Optional[datetime] = None
    updatedAt: Optional[datetime] = None
    capacityProviderName: Optional[str] = None
    launchType: Optional[str] = None
    containers: list[EcsContainer] = Field(default_factory=list)

    @property
    def service_name(self) -> str | None:
        if self.group and self.group.startswith("service:"):
            return self.group.split(":", 1)[1]
        return None


class EcsDeploymentDetail(_Lenient):
    eventType: str                      # INFO | ERROR
    eventName: str                      # SERVICE_DEPLOYMENT_IN_PROGRESS | _COMPLETED | _FAILED
    deploymentId: str                   # "ecs-svc/<number>"
    updatedAt: datetime
    reason: Optional[str] = None


class EventBridgeModel(BaseModel):
    """The EventBridge envelope, as Powertools' `EventBridgeModel` declares it
    (aws_lambda_powertools/utilities/parser/models/event_bridge.py; fields per
    https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html).

    Declared here rather than imported: importing any Powertools Parser model runs the package's
    `models/__init__`, which imports every event model Powertools has (~0.2 s of a cold start) while
    the detector parses two."""

    model_config = ConfigDict(populate_by_name=True)

    version: str
    id: str  # the envelope's field name
    source: str
    account: str
    time: datetime
    region: str
    resources: list[str]
    detail_type: str = Field(alias="detail-type")
    detail: Any
    replay_name: Optional[str] = Field(None, alias="replay-name")


class EcsTaskStateChangeEvent(EventBridgeModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    source: Literal["aws.ecs"]
    detail_type: Literal["ECS Task State Change"] = Field(alias="detail-type")
    detail: EcsTaskDetail  # type: ignore[assignment]


class EcsDeploymentStateChangeEvent(EventBridgeModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    source: Literal["aws.ecs"]
    detail_type: Literal["ECS Deployment State Change"] = Field(alias="detail-type")
    detail: EcsDeploymentDetail  # type: ignore[assignment]

    @property
    def service_arn(self) -> str:
        return self.resources[0]


EcsEvent = Union[EcsTaskStateChangeEvent, EcsDeploymentStateChangeEvent]
_BY_TYPE: dict[str, type[BaseModel]] = {
    TASK_STATE_CHANGE: EcsTaskStateChangeEvent,
    DEPLOYMENT_STATE_CHANGE: EcsDeploymentStateChangeEvent,
}


def parse_event(raw: Any) -> EcsEvent:
    """A raw EventBridge event (dict or JSON text) as one of the two models; InvalidInput otherwise.

    The message names what is wrong (missing field, unsupported detail-type), never echoes values.
    """
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"an event must be a JSON object, got {type(raw).__name__}")
    detail_type = raw.get("detail-type")
    model = _BY_TYPE.get(detail_type) if isinstance(detail_type, str) else None
    if model is None:
        raise InvalidInput(
            f"unsupported detail-type {detail_type!r}: expected {TASK_STATE_CHANGE!r} or {DEPLOYMENT_STATE_CHANGE!r}"
        )
    try:
        event = model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(event)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InvalidInput(f"malformed {detail_type!r} event: {problems}") from None
    if isinstance(event, EcsDeploymentStateChangeEvent) and not event.resources:
        raise InvalidInput("malformed 'ECS Deployment State Change' event: resources[0] (the service ARN) is missing")
    return event  # type: ignore[return-value]


class Resume(Event):
    """{"action": "resume", "service": "web", "cluster": "...", "desired_count": 2}: the console un-halt
    (Lambda console -> Test). The service may be a name, "cluster/name" or an ARN; resume() resolves it."""

    action: Literal["resume"]
    service: StrictStr
    cluster: Optional[StrictStr] = None                               # else $CLUSTER_NAME
    desired_count: Optional[Annotated[StrictInt, Field(ge=0)]] = None  # else what the halt recorded


class Nudge(Event):
    """{"action": "nudge", "service": "<cluster>/<service>", "episode": ISO, "seq": n, "id": ...}: a step
    of a nudge chain, from the one-time schedule the detector created (NudgeScheduler.payload)."""

    action: Literal["nudge"]
    service: Annotated[str, StringConstraints(pattern=r"^[^/]+/[^/]+$")]
    episode: datetime                                                 # the episode's first crash
    seq: Annotated[StrictInt, Field(ge=1)]
    id: StrictStr


Request = Annotated[Union[Resume, Nudge], Field(discriminator="action")]


def parse_invocation(raw: Any) -> Resume | Nudge | EcsEvent:
    """An `action` request ({"action": ...}) or an ECS event from EventBridge; InvalidInput naming the field."""
    if isinstance(raw, dict) and "action" in raw:
        return parse(Request, raw, "crashloop request")
    return parse_event(raw)

"""Crashloop detector Lambda (see tootstack.crashloop and docs/crashloop.md).

Input, each shape its own model in tootstack.crashloop.models (parsed once, by parse_invocation), either:
- an EventBridge "ECS Task State Change" / "ECS Deployment State Change" event: classify, update the
  sliding window in DynamoDB; when it crashloops, roll a bad deployment back, or alert (and later
  escalate) when a stable revision crash-loops, leaving it running (idempotent on the event id through
  the Powertools DynamoDB persistence layer: at-least-once delivery runs the logic once);
- {"action": "resume", "service": "web", "cluster": "...", "desired_count": 2} (cluster and
  desired_count optional): the console un-halt path (Lambda console -> Test);
- {"action": "nudge", "service": "<cluster>/<service>", "episode": ..., "seq": n, "id": ...}: a step of a
  nudge chain, from the one-time EventBridge Scheduler schedule the detector created (idempotent on "id").
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.crashloop import models
from tootstack.crashloop.runtime import Runtime

# Defaults for when the module is imported outside the function's environment (local routing).
logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME", "tootstack"))
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "tootstack"))
IDEMPOTENCY = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=24 * 3600)
_state: dict[str, object] = {}   # per execution environment (a configuration change starts new ones)


def _runtime() -> Runtime:
    """The Runtime (boto3 clients, config from the environment), created on first use, reused when warm."""
    if "runtime" not in _state:
        _state["runtime"] = Runtime()
    return _state["runtime"]  # type: ignore[return-value]


def _persistence_layer() -> DynamoDBPersistenceLayer:
    if "persistence" not in _state:
        # Same table as the detector state: pk/sk keys, records expire through the table's TTL attribute.
        _state["persistence"] = DynamoDBPersistenceLayer(
            table_name=os.environ["CRASHLOOP_TABLE"], key_attr="pk", sort_key_attr="sk", static_pk_value="IDEMPOTENCY",
            expiry_attr="expires_at",
        )
    return _state["persistence"]  # type: ignore[return-value]


@tracer.capture_method
def _process(event: models.EcsEvent) -> dict:
    result = _runtime().handle_ecs_event(event)
    if result.get("stop_kind"):
        metrics.add_metric(name="TaskStops", unit=MetricUnit.Count, value=1)
    if result.get("crash"):
        metrics.add_metric(name="Crashes", unit=MetricUnit.Count, value=1)
    if result.get("action") in ("alert", "escalate"):   # a stable revision: left running, alerted
        metrics.add_metric(name="CrashloopAlerts" if result["action"] == "alert" else "CrashloopEscalations", unit=MetricUnit.Count, value=1)
        logger.warning(
            "stable revision crash-looping (left running)",
            extra={"ecs_service": result.get("service"), **{k: result.get(k) for k in ("action", "reason", "crash_count", "alerts")}},
        )
    elif result.get("action"):
        metrics.add_metric(name="CrashloopHalts", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=f"CrashloopHalts_{result['action']}", unit=MetricUnit.Count, value=1)
        logger.warning(
            "service halted",
            extra={"ecs_service": result.get("service"), **{k: result.get(k) for k in ("action", "via", "reason", "crash_count")}},
        )
    else:
        logger.info("event processed", extra={"event_id": result.get("event_id"), "stop_kind": result.get("stop_kind")})
    return result


@tracer.capture_method
def _nudge(event: models.Nudge) -> dict:
    result = _runtime().handle_nudge(event)
    if result.get("action") == "nudge":
        metrics.add_metric(name="CrashloopNudges", unit=MetricUnit.Count, value=1)
    logger.info("crashloop nudge step", extra={"ecs_service": result.get("service"),
                                              **{k: result.get(k) for k in ("seq", "action", "reason", "nudges", "next_nudge_at")}})
    return result


def _resume(request: models.Resume) -> dict:
    result = _runtime().handle_resume(request)
    metrics.add_metric(name="CrashloopResumes", unit=MetricUnit.Count, value=1)
    logger.info("service resumed", extra={"ecs_service": result["service"], "desired_count": result["desired_count"]})
    return result


def _idempotent(function, context: LambdaContext, event) -> dict:
    """`function(event)` once per event "id" (at-least-once delivery: EventBridge rules and Scheduler)."""
    IDEMPOTENCY.register_lambda_context(context)
    once = idempotent_function(data_keyword_argument="event", persistence_store=_persistence_layer(), config=IDEMPOTENCY)(function)
    return once(event=event)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    request = models.parse_invocation(event)   # once; InvalidInput naming the field, nothing changed
    if isinstance(request, models.Resume):
        return _resume(request)
    _runtime().enable_nudges(getattr(context, "invoked_function_arn", None))
    if isinstance(request, models.Nudge):
        # a scheduled step (EventBridge Scheduler, at least once): idempotent on its "id" (service, episode, step)
        return _idempotent(_nudge, context, request)
    metrics.add_metric(name="EcsEventsReceived", unit=MetricUnit.Count, value=1)
    return _idempotent(_process, context, request)

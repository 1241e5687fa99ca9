"""Spot fallback controller (EventBridge Scheduler, every 2 minutes): thin handler over
tootstack.autoscale.controller. Env: CLUSTER_NAME, SPOT_SERVICE, ON_DEMAND_SERVICE, METRIC_SERVICE,
FALLBACK_STATE_PARAMETER, optional LATENCY_HIGH_SECONDS / LATENCY_LOW_SECONDS / MAX_ON_DEMAND."""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.scheduled import require_object
from tootstack.autoscale.controller import run_once
from tootstack.autoscale.spot_fallback import FallbackConfig
from tootstack.clients import ClientCache
from tootstack.crashloop import is_halted

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls

_client = ClientCache()  # one boto3 client per service, reused by warm invocations


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    require_object(event, "spot fallback invocation")   # reads nothing from its event: any JSON object (InvalidInput otherwise)
    cluster = os.environ["CLUSTER_NAME"]
    ecs = _client("ecs")
    cfg = FallbackConfig(
        latency_high_s=float(os.environ.get("LATENCY_HIGH_SECONDS", "60")),
        latency_low_s=float(os.environ.get("LATENCY_LOW_SECONDS", "10")),
        max_on_demand=int(os.environ.get("MAX_ON_DEMAND", "2")),
    )
    decision = run_once(
        ecs=ecs, cloudwatch=_client("cloudwatch"), ssm=_client("ssm"), cluster=cluster,
        spot_service=os.environ["SPOT_SERVICE"], on_demand_service=os.environ["ON_DEMAND_SERVICE"],
        stack=os.environ.get("STACK_NAME", "tootstack"), metric_service=os.environ["METRIC_SERVICE"],
        state_parameter=os.environ["FALLBACK_STATE_PARAMETER"],
        is_halted=lambda name: is_halted(name, cluster=cluster, ecs=ecs), cfg=cfg,
    )
    result = {"action": decision.action, "on_demand_desired": decision.on_demand_desired,
              "mode": decision.state.mode, "reason": decision.reason}
    logger.info("spot fallback", extra=result)
    return result

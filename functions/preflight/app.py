"""Preflight Lambda: read-only checks of the deployed stack (see tootstack.preflight)."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.scheduled import require_object
from tootstack.preflight import FAIL, run_preflight

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    require_object(event, "preflight invocation")   # reads nothing from its event: any JSON object (InvalidInput otherwise)
    result = run_preflight(os.environ.get("CLUSTER_NAME", ""), os.environ.get("SES_IDENTITY") or None)
    failed = [c["name"] for c in result["checks"] if c["status"] == FAIL]
    metrics.add_metric(name="PreflightFailedChecks", unit=MetricUnit.Count, value=len(failed))
    logger.info("preflight finished", extra={"ok": result["ok"], "failed": failed})
    return result

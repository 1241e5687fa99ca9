"""Maintenance gate Lambda (statemachines/maintenance.asl.json): thin handler over tootstack.maintenance.

Event: {"input": <the execution input>} where the input is {} (schedule: stack defaults) or any of
{"media_days": 7, "preview_cards_days": 180, "prune_accounts": false}.
Returns {"proceed": bool, "reason": str, "steps": [{"name", "command"}]}; raises InvalidInput for a bad
input (minimums: preview_cards_days >= 14, media_days >= 1), so nothing runs.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.crashloop import is_halted
from tootstack.maintenance import Settings, gate, skips
from tootstack.maintenance.events import parse_gate_request
from tootstack.clients import ClientCache
from tootstack.locks import holder_state, read_lock

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls

_client = ClientCache()  # one boto3 client per service, reused by warm invocations


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    request = parse_gate_request(event)   # InvalidInput naming the field, nothing runs
    cluster = os.environ["CLUSTER_NAME"]
    services = [s for s in os.environ.get("SERVICE_NAMES", "").split(",") if s]
    ssm, ecs = _client("ssm"), _client("ecs")
    result = gate(
        request.input,
        defaults=Settings.from_env(),
        services=services,
        is_halted=lambda name: is_halted(name, cluster=cluster, ecs=ecs),
        lock=lambda: read_lock(ssm, os.environ["UPGRADE_LOCK_PARAMETER"]),
        holder_state=lambda held: holder_state(_client("stepfunctions"), held),
    )
    if os.environ.get("MAINTENANCE_STATE_PARAMETER"):
        skipped = skips.record(ssm, os.environ["MAINTENANCE_STATE_PARAMETER"], result["proceed"])
        skips.publish(_client("cloudwatch"), os.environ["STACK_NAME"], skipped)
        result["skipped_seconds"] = skipped
    logger.info("maintenance gate", extra={"proceed": result["proceed"], "reason": result["reason"],
                                           "steps": [s["name"] for s in result["steps"]]})
    return result

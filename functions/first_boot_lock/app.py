"""First-boot lock: two first boots never run `rails db:prepare` at once.

Invoked by the first-boot state machine (statemachines/first_boot.asl.json) with
{"Action": "lock"|"unlock", "Execution": <execution ARN>} (tootstack.first_boot_events.FirstBootLock):
takes or drops the SSM parameter $FIRST_BOOT_LOCK_PARAMETER (tootstack.locks). A lock held by an
execution that no longer runs is taken over (DescribeExecution). Its own function so that only it holds
the lock parameter and the executions' status, and the secrets function only the secrets.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import locks, tracing
from tootstack.clients import ClientCache
from tootstack.first_boot_events import parse_lock_request

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    request = parse_lock_request(event)   # InvalidInput naming the field, nothing changed
    parameter = os.environ["FIRST_BOOT_LOCK_PARAMETER"]
    if request.Action == "lock":
        result = locks.acquire(_client("ssm"), _client("stepfunctions"), parameter, request.Execution, locks.FirstBootInProgress)
    else:
        result = {"released": locks.release(_client("ssm"), parameter, request.Execution)}
    logger.info("first boot lock", extra={"action": request.Action, **result})
    return result

"""run-oneoff Lambda (statemachines/run_oneoff.asl.json): thin handler over tootstack.oneoff.

Actions:
- "validate": {"action": "validate", "input": {"command": ["tootctl", "media", "usage"]}} checks the argv
  against the allow-list (InvalidInput otherwise, nothing run) and returns the container command.
- "report": {"action": "report", "state": <state>} returns exit code, log group/stream/link and the
  last lines of the task's output with every line holding a value of the stack's secrets withheld.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.clients import ClientCache
from tootstack.oneoff import events, oneoff

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    request = events.parse_oneoff_event(event)   # InvalidInput naming the field, nothing run
    if isinstance(request, events.OneoffValidate):
        validated = oneoff.validate_input(
            request.input, task_timeout_seconds=int(os.environ.get("ONEOFF_TASK_TIMEOUT_SECONDS", "3600"))
        )
        logger.info("one-off command accepted", extra={"command": validated["requested"]})
        return validated
    ecs = _client("ecs")
    report = oneoff.report(
        request.state.model_dump(exclude_none=True) if request.state is not None else {},
        ecs=ecs,
        logs=_client("logs"),
        secrets_manager=_client("secretsmanager"),
        region=ecs.meta.region_name,
        container_name=os.environ.get("ONEOFF_CONTAINER_NAME", "toolbox"),
        secret_ids=[s for s in os.environ.get("ONEOFF_SECRET_ARNS", "").split(",") if s],
        secret_prefix=f"{os.environ['STACK_NAME']}/admin/",
    )
    logger.info("one-off command finished", extra={"exit_code": report["exit_code"], "status": report["status"]})
    return report

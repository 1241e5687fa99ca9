"""create-admin Lambda (statemachines/create_admin.asl.json): thin handler over tootstack.oneoff.admin.

Actions:
- "prepare": {"action": "prepare", "input": <console input>, "request": <execution name>}
  validates (InvalidInput, nothing changed), takes the staging secret the admin task definition reads
  (AdminBusy when another execution holds it, nothing changed), stores the password in
  `<stack>/admin/<username>` (a reset is staged, not yet current), and returns names, ARNs and the command.
- "finish": {"action": "finish", "outcome": "created"|"existing"|"password_reset"|"failed", "state": <state>}
  promotes or drops a staged reset, clears the staging secret and returns the result (never a password).
"""

import os
from pathlib import Path

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.clients import ClientCache
from tootstack.oneoff import admin, events, tasks

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations

SCRIPT = Path(__file__).with_name("create_admin.rb").read_text()  # the admin task's `rails runner` script
CONTAINER = os.environ.get("ADMIN_CONTAINER_NAME", "admin")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    request = events.parse_admin_event(event)   # InvalidInput naming the field, nothing changed
    secrets_manager = _client("secretsmanager")
    pending = os.environ["ADMIN_PENDING_SECRET_ARN"]
    if isinstance(request, events.AdminPrepare):
        prepared = admin.prepare(
            secrets_manager, os.environ["STACK_NAME"], pending, request.input, request.request,
            SCRIPT, task_timeout_seconds=int(os.environ.get("ADMIN_TASK_TIMEOUT_SECONDS", "900")),
        )
        logger.info("admin request prepared", extra={"username": prepared["username"], "role": prepared["role"],
                                                     "secret_created": prepared["secret_created"]})
        return prepared
    state, summary = request.state, None
    if state.task:
        ecs = _client("ecs")
        location = tasks.describe_location(ecs, state.task, CONTAINER, ecs.meta.region_name)
        summary = tasks.summarize(state.task, CONTAINER, location)
    elif state.error is not None:
        summary = {"error": state.error.Error, "cause": state.error.Cause[:1000]}
    result = admin.finish(secrets_manager, pending, state.prepared.model_dump(), request.outcome, summary)
    logger.info("admin request finished", extra={"username": result["username"], "status": result["status"]})
    return result

"""Redis credential rotation (Secrets Manager rotation protocol) and first-boot Redis auth setup.

Events: {"Step": "createSecret"|"setSecret"|"testSecret"|"finishSecret", "SecretId", "ClientRequestToken"}
from Secrets Manager, {"Action": "setup"} from the first-boot state machine, or {"Action": "resume"} from
the console to finish an interrupted rotation. See
tootstack.redis_auth.rotation for the no-lockout invariant; nothing here returns or logs a password.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.clients import ClientCache
from tootstack.redis_auth.entry import handle, rotation_from_env
from tootstack.redis_auth.events import parse_rotation_event

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    request = parse_rotation_event(event)   # once, before anything is built; InvalidInput naming the field
    remaining = context.get_remaining_time_in_millis() / 1000 if hasattr(context, "get_remaining_time_in_millis") else None
    rotation = rotation_from_env(os.environ, remaining_seconds=remaining, client=_client)
    rotation.logger = logger
    return handle(request, rotation)

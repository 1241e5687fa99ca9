"""In-VPC Redis probe: AUTH + PING with the given credential over TLS; answers ok or why not.

Invoked synchronously by the rotation function only (its payload holds a password: never logged).
"""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack.redis_auth.entry import probe

logger = Logger()


@logger.inject_lambda_context(log_event=False)
def handler(event: dict, context: LambdaContext) -> dict:
    result = probe(event)
    logger.info("redis probe", extra={"ok": result["ok"], "error": result.get("error"), "user": event.get("username")})
    return result

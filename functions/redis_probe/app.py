"""In-VPC Redis probe (no AWS API access): the only function that opens connections to Redis.

Two actions, both with a credential handed in the invoke payload (never logged, never echoed):
- default: AUTH + PING with {"username", "password", "what"} over TLS; answers ok or why not
  (invoked by the rotation function, tootstack.redis_auth.entry.probe).
- {"action": "sidekiq_queue_latency", "credential": {...}, "queues": [...]}: each queue's latency, read as
  Sidekiq does (invoked every minute by QueueLatencyFunction, tootstack.autoscale.queue_latency).
The Redis endpoint always comes from this function's environment, never from the payload.
"""

import os

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack.autoscale.queue_latency import ACTION as QUEUE_LATENCY, probe_queue_latency
from tootstack.errors import TootstackError
from tootstack.redis_auth.entry import endpoint_from_env, probe

logger = Logger()


@logger.inject_lambda_context(log_event=False)
def handler(event: dict, context: LambdaContext) -> dict:
    action = event.get("action") if isinstance(event, dict) else None
    if action == QUEUE_LATENCY:
        try:
            result = probe_queue_latency(event, endpoint_from_env(os.environ))
        except TootstackError as exc:    # configuration (REDIS_HOST/REDIS_PORT): names the variable only
            result = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # unexpected: the class name only, never a message that could quote the payload
            result = {"ok": False, "error": type(exc).__name__, "message": f"unexpected {type(exc).__name__}"}
        logger.info("sidekiq queue latency probe", extra={"ok": result["ok"], "error": result.get("error"),
                                                          "queues": len(result.get("queues") or {})})
        return result
    if action is not None:
        logger.info("redis probe", extra={"ok": False, "error": "InvalidInput"})
        return {"ok": False, "error": "InvalidInput", "message": f"unknown action (expected {QUEUE_LATENCY!r} or none)"}
    result = probe(event)
    logger.info("redis probe", extra={"ok": result["ok"], "error": result.get("error"), "user": event.get("username")})
    return result

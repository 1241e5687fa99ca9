"""Secrets bootstrap custom resource: generate Mastodon's secrets once, never replace them.

Create/Update: fill every missing key of AppSecrets, DatabaseSecret, RedisSecret and SmtpSecret
(tootstack.secrets.bootstrap); existing values are kept. Delete: nothing (the secrets are retained by
DeletionPolicy Retain). The response's Data and the logs carry key names only, never values.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack.cfn_custom import FAILED, SUCCESS, respond
from tootstack.secrets.bootstrap import BootstrapConfig, run_bootstrap

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    request_type = event.get("RequestType")
    physical_id = event.get("PhysicalResourceId") or f"{os.environ.get('STACK_NAME', 'tootstack')}-secrets-bootstrap"
    try:
        if request_type in ("Create", "Update"):
            config = BootstrapConfig.from_properties(event.get("ResourceProperties", {}), os.environ.get("AWS_REGION"))
            data = run_bootstrap(config).summary()
        elif request_type == "Delete":
            data = {"Generated": "none", "Kept": "retained (DeletionPolicy Retain)"}
        else:
            raise ValueError(f"unknown RequestType {request_type!r}")
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs for an hour
        reason = f"{type(exc).__name__}: {exc}"
        logger.error("secrets bootstrap failed", extra={"request_type": request_type, "reason": reason})
        return respond(event, context, FAILED, reason=reason, physical_id=physical_id)
    logger.info("secrets bootstrap done", extra={"request_type": request_type, **data})
    return respond(event, context, SUCCESS, data=data, physical_id=physical_id)

"""Secrets bootstrap: generate Mastodon's secrets once, never replace them.

As a CloudFormation custom resource (Custom::SecretsBootstrap, properties name the secrets):
Create/Update: fill every missing key of AppSecrets, DatabaseSecret, RedisSecret and SmtpSecret
(tootstack.secrets.bootstrap); existing values are kept. Delete: nothing (the secrets are retained by
DeletionPolicy Retain). Invoked directly with {"Action": "bootstrap"} (first-boot state machine,
console) it does the same from its environment (APP_SECRET_ARN, DATABASE_SECRET_ARN, REDIS_SECRET_ARN,
SMTP_SECRET_ARN, SMTP_USER_NAME, SES_REGION) and returns the summary. {"Action": "lock"|"unlock",
"Execution": <execution ARN>} takes/drops the first-boot lock ($FIRST_BOOT_LOCK_PARAMETER): two first
boots never run `rails db:prepare` at once. As Custom::FirstBootStart
(property StartStateMachineArn) it starts the first-boot state machine once, on stack creation. The response's Data, the return
value and the logs carry key names only, never values.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.cfn_custom import FAILED, SUCCESS, problems, properties, respond
from tootstack.clients import ClientCache
from tootstack.errors import InvalidInput
from tootstack.secrets.bootstrap import BootstrapConfig, run_bootstrap

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS_AND_CLOUDFORMATION)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations


def _bootstrap(props: dict):
    return run_bootstrap(BootstrapConfig.from_properties(props, os.environ.get("AWS_REGION")),
                         sm=_client("secretsmanager"), iam=_client("iam"))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    if not isinstance(event, dict):
        raise InvalidInput('event must be a JSON object: {"Action": "bootstrap"} or a CloudFormation custom resource request')
    if event.get("Action") in ("lock", "unlock"):
        from tootstack import locks

        parameter, execution = os.environ["FIRST_BOOT_LOCK_PARAMETER"], str(event.get("Execution", ""))
        if not execution.startswith("arn:"):
            raise InvalidInput("Execution must be the execution ARN ($$.Execution.Id)")
        if event["Action"] == "lock":
            result = locks.acquire(_client("ssm"), _client("stepfunctions"), parameter, execution, locks.FirstBootInProgress)
        else:
            result = {"released": locks.release(_client("ssm"), parameter, execution)}
        logger.info("first boot lock", extra={"action": event["Action"], **result})
        return result
    if event.get("Action") == "bootstrap":
        props = {
            "AppSecretArn": os.environ.get("APP_SECRET_ARN"),
            "DatabaseSecretArn": os.environ.get("DATABASE_SECRET_ARN"),
            "RedisSecretArn": os.environ.get("REDIS_SECRET_ARN"),
            "SmtpSecretArn": os.environ.get("SMTP_SECRET_ARN"),
            "SmtpUserName": os.environ.get("SMTP_USER_NAME"),
            "SesRegion": os.environ.get("SES_REGION"),
        }
        data = _bootstrap(props).summary()
        logger.info("secrets bootstrap done", extra={"action": "bootstrap", **data})
        return data
    request_type = event.get("RequestType")
    props = properties(event)
    starts_first_boot = bool(props.get("StartStateMachineArn"))
    physical_id = event.get("PhysicalResourceId") or (
        f"{os.environ.get('STACK_NAME', 'tootstack')}-{'first-boot-start' if starts_first_boot else 'secrets-bootstrap'}")
    try:
        problem = problems(event)
        if problem:
            raise InvalidInput(problem)
        if starts_first_boot:
            # Custom::FirstBootStart: start first boot once, on stack creation only
            from tootstack.first_boot import start_first_boot

            data = {"Execution": "none"}
            if request_type == "Create":
                data = {"Execution": start_first_boot(_client("stepfunctions"), props["StartStateMachineArn"], event["StackId"])}
            logger.info("first boot trigger", extra={"request_type": request_type, **data})
            return respond(event, context, SUCCESS, data=data, physical_id=physical_id)
        if request_type in ("Create", "Update"):
            data = _bootstrap(props).summary()
        else:
            data = {"Generated": "none", "Kept": "retained (DeletionPolicy Retain)"}
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs for an hour
        reason = f"{type(exc).__name__}: {exc}"
        logger.error("secrets bootstrap failed", extra={"request_type": str(request_type)[:40], "reason": reason})
        return respond(event, context, FAILED, reason=reason, physical_id=physical_id)
    logger.info("secrets bootstrap done", extra={"request_type": request_type, **data})
    return respond(event, context, SUCCESS, data=data, physical_id=physical_id)

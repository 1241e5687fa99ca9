"""Secrets bootstrap: generate Mastodon's secrets once, never replace them.

As a CloudFormation custom resource (Custom::SecretsBootstrap, properties name the secrets):
Create/Update: fill every missing key of AppSecrets, DatabaseSecret, RedisSecret and SmtpSecret
(tootstack.secrets.bootstrap); existing values are kept. Delete: nothing (the secrets are retained by
DeletionPolicy Retain). Invoked directly with {"Action": "bootstrap"} (first-boot state machine,
console) it does the same from its environment (APP_SECRET_ARN, DATABASE_SECRET_ARN, REDIS_SECRET_ARN,
SMTP_SECRET_ARN, SMTP_USER_NAME, SES_REGION) and returns the summary. As Custom::FirstBootStart
(property StartStateMachineArn) it starts the first-boot state machine once, on stack creation. The
response's Data, the return value and the logs carry key names only, never values. Each shape has its
own entry below (on_bootstrap, on_secrets_bootstrap, on_first_boot_start) and its own model
(tootstack.secrets.events), parsed once. The first-boot lock is its own function (functions/first_boot_lock).

Both custom resources stay on this function: CloudFormation refuses to change a custom resource's
ServiceToken on an existing stack ("Modifying service token is not allowed";
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudformation-customresource.html),
and a renamed resource would be created again, starting first boot on a running stack.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.cfn_custom import FAILED, SUCCESS, Request, parse_request, respond
from tootstack.clients import ClientCache
from tootstack.errors import InvalidInput
from tootstack.secrets import events
from tootstack.secrets.bootstrap import BootstrapConfig, run_bootstrap

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS_AND_CLOUDFORMATION)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations


def _bootstrap(props: dict):
    return run_bootstrap(BootstrapConfig.from_properties(props, os.environ.get("AWS_REGION")),
                         sm=_client("secretsmanager"), iam=_client("iam"))


def on_bootstrap(request: events.Bootstrap) -> dict:
    """{"Action": "bootstrap"}: fill the missing keys of the secrets this function's environment names."""
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


def on_secrets_bootstrap(request: Request[events.SecretsBootstrapProperties]) -> dict:
    """Custom::SecretsBootstrap: Create/Update fill the missing keys; Delete keeps everything (retained)."""
    if request.properties is None:   # Delete
        return {"Generated": "none", "Kept": "retained (DeletionPolicy Retain)"}
    return _bootstrap(request.properties.as_dict()).summary()


def on_first_boot_start(request: Request[events.FirstBootStartProperties]) -> dict:
    """Custom::FirstBootStart: start first boot once, on stack creation only."""
    data = {"Execution": "none"}
    if request.event.request_type == "Create":
        from tootstack.first_boot import start_first_boot

        data = {"Execution": start_first_boot(_client("stepfunctions"), request.properties.StartStateMachineArn,
                                              request.event.stack_id)}
    logger.info("first boot trigger", extra={"request_type": request.event.request_type, **data})
    return data


# one entry per custom resource type: its properties model, its step and its physical id's suffix
CUSTOM_RESOURCES = {
    "Custom::SecretsBootstrap": (events.SecretsBootstrapProperties, on_secrets_bootstrap, "secrets-bootstrap"),
    "Custom::FirstBootStart": (events.FirstBootStartProperties, on_first_boot_start, "first-boot-start"),
}


def on_custom_resource(event: dict, context: LambdaContext) -> dict:
    """A CloudFormation custom resource request: always answered (FAILED naming what is wrong)."""
    resource_type = event.get("ResourceType")
    model, step, suffix = CUSTOM_RESOURCES.get(resource_type if isinstance(resource_type, str) else "",
                                               (None, None, "secrets-bootstrap"))
    physical_id = event.get("PhysicalResourceId") or f"{os.environ.get('STACK_NAME', 'tootstack')}-{suffix}"
    request_type = event.get("RequestType")
    try:
        request = parse_request(event, model)
        if step is None:
            if request.event.request_type != "Delete":
                raise InvalidInput(f"unknown resource type: expected one of {', '.join(CUSTOM_RESOURCES)}")
            data = {}
        else:
            data = step(request)
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs for an hour
        reason = f"{type(exc).__name__}: {exc}"
        logger.error("secrets bootstrap failed", extra={"request_type": str(request_type)[:40], "reason": reason})
        return respond(event, context, FAILED, reason=reason, physical_id=physical_id)
    logger.info("secrets bootstrap done", extra={"request_type": request_type, **data})
    return respond(event, context, SUCCESS, data=data, physical_id=physical_id)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    if not isinstance(event, dict):
        raise InvalidInput('event must be a JSON object: {"Action": "bootstrap"} or a CloudFormation custom resource request')
    if "Action" in event:   # a direct request (first-boot state machine, console), parsed once
        return on_bootstrap(events.parse_direct(event))
    return on_custom_resource(event, context)

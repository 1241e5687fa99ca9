"""Deploy guard: the custom resources that run inside every `sam deploy` around the ECS services
(tootstack.deploy_guard). Thin handler: the resource type picks the entry, its properties model
(tootstack.deploy_guard_events) and its step.

Custom::ServiceCounts   {ClusterName, Services: {Key: service name}} -> Data {Key: desired count}
Custom::VersionGuard    {ClusterName, Services: [names], VersionParameter, Images: {Param: image},
                         TaskDefinitions: [...]} -> FAILED with the samconfig.toml values to set when the
                         images are older than the running version (skipped while the stack rolls back)
Custom::CoreBridge      {ClusterName, CoreService, BridgeService, CoreTaskDefinition, RecordParameter}
                         (while the stack rolls back: releases the bridge instead, Data {Bridged: rollback})
Custom::CoreBridgeRelease {ClusterName, RecordParameter, Token}
Delete is a no-op for every type. A property missing or of the wrong type is answered FAILED naming it. Data and reasons carry names, counts and versions, never a secret.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import deploy_guard, tracing
from tootstack import deploy_guard_events as events
from tootstack.cfn_custom import FAILED, SUCCESS, parse_request, problems, respond
from tootstack.errors import InvalidInput
from tootstack.clients import ClientCache

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS_AND_CLOUDFORMATION)  # only the clients this handler calls
_client = ClientCache()  # one boto3 client per service, reused by warm invocations


def _rolling_back(stack_id: str) -> bool:
    stacks = _client("cloudformation").describe_stacks(StackName=stack_id).get("Stacks", [])
    return bool(stacks) and "ROLLBACK" in stacks[0].get("StackStatus", "")


def _service_counts(props: events.ServiceCounts, stack_id: str) -> dict:
    return deploy_guard.service_counts(_client("ecs"), props.ClusterName, dict(props.Services))


def _version_guard(props: events.VersionGuard, stack_id: str) -> dict:
    if stack_id and _rolling_back(stack_id):   # a rollback puts back what ran before: never refuse it
        return {"Version": "rollback", "Running": "unchecked"}
    running, where = deploy_guard.running_version(_client("ecs"), _client("ssm"), props.ClusterName, list(props.Services),
                                                  props.VersionParameter)
    return deploy_guard.check_version(dict(props.Images), running, where)


def _core_bridge(props: events.CoreBridge, stack_id: str) -> dict:
    ecs, ssm, autoscaling = _client("ecs"), _client("ssm"), _client("application-autoscaling")
    # A rollback runs after the core went back to its old revision (CoreBridgeRelease, then CoreService,
    # are rolled back first): bridging again would leave a record no release follows, web's minimum at 1.
    if stack_id and _rolling_back(stack_id):
        deploy_guard.release_bridge(ssm, autoscaling, ecs, cluster=props.ClusterName, record_parameter=props.RecordParameter)
        return {"Bridged": "rollback"}
    return deploy_guard.bridge(ecs, ssm, autoscaling, cluster=props.ClusterName, core=props.CoreService,
                               web=props.BridgeService, core_task_definition=props.CoreTaskDefinition,
                               record_parameter=props.RecordParameter)


def _core_bridge_release(props: events.CoreBridgeRelease, stack_id: str) -> dict:
    return deploy_guard.release_bridge(_client("ssm"), _client("application-autoscaling"), _client("ecs"),
                                       cluster=props.ClusterName, record_parameter=props.RecordParameter)


# one entry per resource type: its properties model and its step (Create and Update; Delete is a no-op)
ENTRIES = {
    "Custom::ServiceCounts": (events.ServiceCounts, _service_counts),
    "Custom::VersionGuard": (events.VersionGuard, _version_guard),
    "Custom::CoreBridge": (events.CoreBridge, _core_bridge),
    "Custom::CoreBridgeRelease": (events.CoreBridgeRelease, _core_bridge_release),
}


def _step(event: dict) -> dict:
    """One custom resource request, parsed once (InvalidInput naming the property); returns the Data, raises to fail it."""
    resource_type = event.get("ResourceType")
    model, step = ENTRIES.get(resource_type if isinstance(resource_type, str) else "", (None, None))
    request = parse_request(event, model)
    if request.event.request_type == "Delete":
        return {}
    if step is None:
        raise InvalidInput(f"unknown resource type: expected one of {', '.join(ENTRIES)}")
    return step(request.properties, request.event.stack_id)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    if not isinstance(event, dict):
        raise InvalidInput("event must be a CloudFormation custom resource request (a JSON object)")
    resource_type, request_type = str(event.get("ResourceType", ""))[:80], str(event.get("RequestType", ""))[:40]
    physical_id = event.get("PhysicalResourceId") or f"{os.environ.get('STACK_NAME', 'tootstack')}-{event.get('LogicalResourceId') or 'deploy-guard'}"
    problem = problems(event)
    if problem:   # answered FAILED (never left hanging); respond() refuses a request with no ResponseURL
        return respond(event, context, FAILED, reason=problem, physical_id=physical_id, no_echo=False)
    try:
        data = _step(event)
    except Exception as exc:  # every failure must reach CloudFormation, or the stack hangs for an hour
        reason = f"{type(exc).__name__}: {exc}"
        logger.error("deploy guard refused", extra={"resource_type": resource_type, "request_type": request_type, "reason": reason})
        return respond(event, context, FAILED, reason=reason, physical_id=physical_id, no_echo=False)
    logger.info("deploy guard", extra={"resource_type": resource_type, "request_type": request_type, **data})
    return respond(event, context, SUCCESS, data=data, physical_id=physical_id, no_echo=False)

"""Custom resources answered as CloudFormation gets their answers: through the deployed function.

moto's CloudFormation does not invoke custom resources. Where a stage needs one answered (the redeploy
stage's `sam deploy`), it sends the request CloudFormation would send
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requests.html) to the function
the resource's ServiceToken names, through the Lambda API (so the routed handler runs with that
function's environment and role, and its calls are recorded as the role's), and reads the answer the
function PUTs to the request's ResponseURL (tootstack_dev.local.cfn_response).
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from typing import Any, Callable

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.local.cfn_response import response_server

class CustomResourceFailed(TootstackError):
    """The function answered FAILED (CloudFormation fails the resource, and the deploy, with the reason)."""


def resolved_properties(template: dict[str, Any], parameters: dict[str, str], region: str, stack_name: str,
                        logical_id: str, physical: Callable[[str], str | None],
                        attribute: Callable[[str, str], Any] | None = None) -> dict[str, Any] | None:
    """A resource's properties as CloudFormation resolves them for these parameters (conditions, Fn::If,
    Fn::Sub, ... by tootstack_dev.cost.template_eval), each Ref to a resource its `physical(id)`, each
    GetAtt `attribute(id, name)`; without ServiceToken. None when its Condition leaves it out."""
    from tootstack_dev.cost.template_eval import ResourceRef, TemplateEvaluator

    resource = TemplateEvaluator(template, parameters, region=region, stack_name=stack_name).resources().get(logical_id)
    if resource is None:
        return None

    def fill(node: Any) -> Any:
        if isinstance(node, ResourceRef):
            if node.attribute is None:
                value = physical(node.logical_id)
            elif attribute is not None:
                value = attribute(node.logical_id, node.attribute)
            else:
                value = None
            if value is None:
                raise TootstackError(f"{logical_id}: cannot resolve {node.logical_id}{'.' + node.attribute if node.attribute else ''}")
            return value
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items() if key != "ServiceToken"}
        if isinstance(node, list):
            return [fill(item) for item in node]
        return node

    return fill(resource.get("Properties") or {})


class CloudFormationRequests:
    """Context manager: the ResponseURL server for one emulated stack operation."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self._stack = ExitStack()
        self.url = ""
        self.answers: list[dict[str, Any]] = []
        self.stack_id = ""

    def __enter__(self) -> "CloudFormationRequests":
        self.url, self.answers = self._stack.enter_context(response_server())
        cfn = boto3.client("cloudformation", region_name=self.ctx.region)
        self.stack_id = cfn.describe_stacks(StackName=self.ctx.stack_name)["Stacks"][0]["StackId"]
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def request(self, logical_id: str, resource: dict[str, Any], properties: dict[str, Any],
                request_type: str = "Update", old_properties: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request to the resource's ServiceToken function; returns the answer's Data, raises
        CustomResourceFailed with the answer's Reason."""
        token = (resource.get("Properties") or {}).get("ServiceToken")
        target = token.get("Fn::GetAtt") if isinstance(token, dict) else None
        if not target:
            raise TootstackError(f"{logical_id}: ServiceToken is not a function of the stack: {token!r}")
        function_id = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
        function = self.ctx.physical(function_id)
        arn = boto3.client("lambda", region_name=self.ctx.region).get_function(FunctionName=function)["Configuration"]["FunctionArn"]
        request_id = str(uuid.uuid4())
        event: dict[str, Any] = {
            "RequestType": request_type, "ServiceToken": arn, "ResponseURL": self.url, "StackId": self.stack_id,
            "RequestId": request_id, "ResourceType": resource["Type"], "LogicalResourceId": logical_id,
            "ResourceProperties": {"ServiceToken": arn, **properties},
        }
        if request_type != "Create":
            event["PhysicalResourceId"] = f"{self.ctx.stack_name}-{logical_id}"
            event["OldResourceProperties"] = {"ServiceToken": arn, **(old_properties or properties)}
        try:
            self.ctx.aws.invoke(function, event)
        except TootstackError as exc:   # an unhandled error: CloudFormation would wait for an answer, then fail
            raise CustomResourceFailed(f"{logical_id}: {function_id} failed without answering: {exc}") from None
        answer = next((a for a in self.answers if a.get("RequestId") == request_id), None)
        if answer is None:
            raise CustomResourceFailed(f"{logical_id}: {function_id} did not answer CloudFormation")
        if answer.get("Status") != "SUCCESS":
            raise CustomResourceFailed(f"{logical_id}: {answer.get('Reason', '')}")
        return dict(answer.get("Data") or {})

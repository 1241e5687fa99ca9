"""CloudFormation custom resources: the request, typed, and the answer (the cfn-response contract, no secrets in it).

`parse_request(event, Properties)` is a custom resource handler's only parsing: the request envelope
checked (`problems`) and wrapped in Powertools' `CloudFormationCustomResourceEvent` (the event source data
class of `examples/event_sources/src/cloudformation_custom_resource_handler.py`), with its
ResourceProperties validated as the resource type's own model (`tootstack.contracts`: InvalidInput naming
the property). A Delete's properties are not validated: a stack must stay deletable whatever they became.

`respond(event, context, status, data, reason, physical_id)` PUTs the response document to the
pre-signed ResponseURL. Data must never hold a secret value: CloudFormation shows it through GetAtt and
keeps it in its own records; callers pass key names and counts only.
"""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from tootstack.errors import InvalidInput

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.cloudformation_custom_resource_event import (
        CloudFormationCustomResourceEvent,
    )

P = TypeVar("P")

SUCCESS, FAILED = "SUCCESS", "FAILED"
REQUEST_TYPES = ("Create", "Update", "Delete")
IDS = ("StackId", "RequestId", "LogicalResourceId")


def problems(event: Any) -> str:
    """"" for a well-formed custom resource request, else what is wrong with it (for the FAILED answer).
    CloudFormation sends RequestType, ResponseURL, StackId, RequestId, LogicalResourceId, ResourceType and
    ResourceProperties (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requests.html)."""
    if not isinstance(event, dict):
        return "the event is not a JSON object"
    wrong = [k for k in ("RequestType", "ResponseURL", *IDS) if not isinstance(event.get(k), str) or not event.get(k)]
    if "RequestType" not in wrong and event["RequestType"] not in REQUEST_TYPES:
        wrong.append(f"RequestType (one of {', '.join(REQUEST_TYPES)})")
    if event.get("ResourceProperties") is not None and not isinstance(event.get("ResourceProperties"), dict):
        wrong.append("ResourceProperties (an object)")
    return f"malformed custom resource request: missing or invalid {', '.join(wrong)}" if wrong else ""


def properties(event: dict[str, Any]) -> dict[str, Any]:
    """ResourceProperties, {} when absent or null."""
    value = event.get("ResourceProperties")
    return value if isinstance(value, dict) else {}


class Request(NamedTuple, Generic[P]):
    """A parsed custom resource request: the envelope (Powertools' data class) and the typed properties
    (None for a Delete)."""

    event: CloudFormationCustomResourceEvent
    properties: P | None


def parse_request(event: Any, model: type[P] | None) -> Request[P]:
    """The request as `Request(event, properties)`; InvalidInput naming what is wrong (the envelope's
    fields, or the properties `model` refuses). `model=None`: the resource has no properties to read."""
    problem = problems(event)
    if problem:
        raise InvalidInput(problem)
    # imported on the first request: the data classes' common module is a tenth of `import boto3`
    from aws_lambda_powertools.utilities.data_classes.cloudformation_custom_resource_event import (
        CloudFormationCustomResourceEvent,
    )

    request = CloudFormationCustomResourceEvent(event)
    if model is None or request.request_type == "Delete":
        return Request(request, None)
    from tootstack.contracts import parse

    return Request(request, parse(model, request.resource_properties, f"{request.resource_type or 'custom resource'} properties"))


def respond(event: dict[str, Any], context: Any, status: str, data: dict[str, str] | None = None,
            reason: str = "", physical_id: str | None = None, timeout: float = 30.0,
            no_echo: bool = True) -> dict[str, Any]:
    """`no_echo=False` only for Data that is public by nature (e.g. image references)."""
    log_stream = getattr(context, "log_stream_name", None) or "local"
    url = event.get("ResponseURL") if isinstance(event, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise InvalidInput("the custom resource event has no http(s) ResponseURL: CloudFormation cannot be answered")
    physical = physical_id or event.get("PhysicalResourceId") or log_stream
    body = {
        "Status": status,
        "Reason": (reason or f"see CloudWatch log stream {log_stream}")[:1000],
        "PhysicalResourceId": str(physical)[:1024],
        # Echoed as sent: a missing id cannot be invented, and CloudFormation matches the answer by them.
        "StackId": str(event.get("StackId") or ""),
        "RequestId": str(event.get("RequestId") or ""),
        "LogicalResourceId": str(event.get("LogicalResourceId") or ""),
        "NoEcho": no_echo,
        "Data": data or {},
    }
    payload = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        url, data=payload, method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(payload))},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # pre-signed https URL from CloudFormation
        response.read()
    return body

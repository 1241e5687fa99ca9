"""Minimal CloudFormation custom resource responder (the cfn-response contract, no secrets in it).

`respond(event, context, status, data, reason, physical_id)` PUTs the response document to the
pre-signed ResponseURL. Data must never hold a secret value: CloudFormation shows it through GetAtt and
keeps it in its own records; callers pass key names and counts only.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

SUCCESS, FAILED = "SUCCESS", "FAILED"


def respond(event: dict[str, Any], context: Any, status: str, data: dict[str, str] | None = None,
            reason: str = "", physical_id: str | None = None, timeout: float = 30.0,
            no_echo: bool = True) -> dict[str, Any]:
    """`no_echo=False` only for Data that is public by nature (e.g. image references)."""
    log_stream = getattr(context, "log_stream_name", None) or "local"
    body = {
        "Status": status,
        "Reason": (reason or f"see CloudWatch log stream {log_stream}")[:1000],
        "PhysicalResourceId": physical_id or event.get("PhysicalResourceId") or log_stream,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": no_echo,
        "Data": data or {},
    }
    payload = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        event["ResponseURL"], data=payload, method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(payload))},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - pre-signed https URL from CloudFormation
        response.read()
    return body

"""A deployed stack, read-only: settled, every output the template declares, preflight passing, the state
machines the operator docs name, and the site answering over HTTPS for its own domain.

Nothing here writes to the stack: DescribeStacks, DescribeStateMachine, and one Invoke of the preflight function,
whose checks are read-only (tootstack/preflight.py)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from urllib.parse import urlsplit

from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
# Settled states (CloudFormation User Guide, "Stack status codes",
# https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/view-stack-events.html#cfn-console-view-stack-data-resources-status-codes):
# ROLLBACK_COMPLETE is a failed creation and DELETE_COMPLETE a deleted stack, neither serves; UPDATE_ROLLBACK_COMPLETE
# is a failed update rolled back to the previous, working, template.
SETTLED = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}


def test_the_stack_exists_and_is_settled(stack):
    assert stack["StackStatus"] in SETTLED, f"{stack['StackName']} is {stack['StackStatus']}: {stack.get('StackStatusReason', '')}"


def test_every_unconditional_output_of_the_template_is_there(stack):
    """The operator docs (README, docs/) name these outputs: the console inputs, the log groups, preflight."""
    declared = {key for key, output in TEMPLATE["Outputs"].items() if "Condition" not in output}
    missing = declared - set(stack["outputs"])
    assert not missing, f"outputs missing from {stack['StackName']}: {sorted(missing)}"


def test_preflight_passes(aws, stack):
    """The deployed preflight function, invoked with {} as the README says (output PreflightFunctionName)."""
    answer = aws.client("lambda").invoke(FunctionName=stack["outputs"]["PreflightFunctionName"], Payload=b"{}")
    body = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, body
    failed = [check for check in body["checks"] if check["status"] == "fail"]
    assert body["ok"] and not failed, failed


def test_the_state_machines_exist_and_are_active(aws, stack, stack_name):
    sfn = aws.client("stepfunctions")
    arns = {key: value for key, value in stack["outputs"].items() if key.endswith("StateMachineArn")}
    assert {"CreateAdminStateMachineArn", "RunOneOffStateMachineArn", "UpgradeStateMachineArn",
            "MaintenanceStateMachineArn"} <= set(arns)
    first_boot = arns["CreateAdminStateMachineArn"].rsplit(":", 1)[0] + f":{stack_name}-first-boot"
    for name, arn in {**arns, "first-boot (README)": first_boot}.items():
        assert sfn.describe_state_machine(stateMachineArn=arn)["status"] == "ACTIVE", name


def https_get(url: str) -> tuple[int, bytes]:
    """GET over HTTPS with the certificate verified for the URL's host (the system CAs, or SSL_CERT_FILE), no
    redirect followed. TOOTSTACK_SITE_ADDRESS=ip[:port] connects there instead of the host's DNS address, as
    `curl --resolve` does, keeping SNI, the certificate check and the Host header on the URL's host: for a
    stack whose DNS record does not point at it yet."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    connection = http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=context, timeout=30)
    address = os.environ.get("TOOTSTACK_SITE_ADDRESS")
    if address:
        ip, _, port = address.partition(":")

        def connect() -> None:
            sock = socket.create_connection((ip, int(port or 443)), timeout=30)
            connection.sock = context.wrap_socket(sock, server_hostname=parts.hostname)

        connection.connect = connect
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_site_answers_over_https_for_its_own_domain(stack):
    """GET {Url}health answers 200 and GET {Url}api/v2/instance names the stack's domain: the request went
    through CloudFront and the ALB to Mastodon with its Host header intact (Mastodon's instance API,
    https://docs.joinmastodon.org/methods/instance/#v2, returns the server's `domain`; `GET /health` is puma's
    health check, as the template's container health checks use it)."""
    url = stack["outputs"]["Url"].rstrip("/")
    assert urlsplit(url).scheme == "https", url
    status, body = https_get(f"{url}/health")
    assert status == 200, (status, body[:200])
    status, body = https_get(f"{url}/api/v2/instance")
    assert status == 200, (status, body[:200])
    assert json.loads(body)["domain"] == urlsplit(url).hostname

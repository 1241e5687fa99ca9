"""Every input path gives a clear error: Unicode digits never reach int(), and a malformed
CloudFormation custom resource request is still answered (a stack waiting for an answer hangs for an
hour, https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html).

Python facts: "²".isdigit() is True and int("²") raises ValueError; "４".isdigit() is True and
int("４") == 4; re's \\d matches both unless re.ASCII (https://docs.python.org/3/library/stdtypes.html#str.isdigit).
"""


import pytest

from tootstack.errors import InvalidInput
from tootstack_dev.local.aws import LambdaContext
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.maintenance import Settings, gate
from tootstack.upgrade.version import parse_version

ROOT = project_root()
UNICODE_DIGITS = ["²", "４", "٣", "7²", "1４", "๑๔", "⁹"]


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
@pytest.mark.parametrize("key", ["media_days", "preview_cards_days"])
def test_maintenance_days_with_unicode_digits_are_invalid_input(key, digits):
    with pytest.raises(InvalidInput, match="whole number of days"):
        gate({key: digits}, defaults=Settings(), services=[], is_halted=lambda _: False, lock=lambda: None)


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_maintenance_stack_parameters_with_unicode_digits_are_invalid_input(digits):
    with pytest.raises(InvalidInput):
        Settings.from_env({"MAINTENANCE_MEDIA_DAYS": digits})


@pytest.mark.parametrize("version", ["v４.5.3", "v4.٥.3", "v4.5.3-rc.²", "v4.5.３"])
def test_upgrade_versions_with_unicode_digits_are_invalid_input(version):
    with pytest.raises(InvalidInput, match="must look like v4.5.3"):
        parse_version(version)


BASE = {"RequestType": "Create", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
        "RequestId": "req-1", "LogicalResourceId": "Thing", "ResourceType": "Custom::Thing"}
MALFORMED = [
    ({"ResourceProperties": None}, ""),
    ({"ResourceProperties": "not-an-object"}, "ResourceProperties"),
    ({"ResourceProperties": {}, "StackId": None}, "StackId"),
    ({"ResourceProperties": {}, "RequestId": ""}, "RequestId"),
    ({"ResourceProperties": {}, "LogicalResourceId": 7}, "LogicalResourceId"),
    ({"ResourceProperties": {}, "RequestType": "Destroy"}, "RequestType"),
]


def _without_nulls(event):
    return {k: v for k, v in event.items() if v is not None or k == "ResourceProperties"}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize("function", ["secrets_bootstrap", "mirror"])
@pytest.mark.parametrize("change, reason", MALFORMED)
def test_malformed_custom_resource_requests_are_answered_failed(function, change, reason, response_url, monkeypatch):
    url, received = response_url
    monkeypatch.setenv("STACK_NAME", "s")
    monkeypatch.delenv("REPOSITORIES", raising=False)
    handler = LocalFunction(f"Malformed{function}", ROOT / "functions" / function, "app.handler", {}).entrypoint
    event = dict(BASE, ResponseURL=url, **change)
    if event.get("StackId") is None:
        event.pop("StackId")

    handler(event, LambdaContext(function))

    assert len(received) == 1, "CloudFormation got no answer"
    assert received[0]["Status"] == "FAILED"
    assert reason in received[0]["Reason"]
    assert received[0]["RequestId"] == (event.get("RequestId") or "")


def test_a_request_without_a_response_url_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("STACK_NAME", "s")
    handler = LocalFunction("NoUrlSecretsBootstrap", ROOT / "functions/secrets_bootstrap", "app.handler", {}).entrypoint
    with pytest.raises(InvalidInput, match="ResponseURL"):
        handler(dict(BASE, ResourceProperties={}), LambdaContext("secrets-bootstrap"))

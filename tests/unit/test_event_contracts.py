"""Typed contracts at the Lambda edges: every handler parses its event once, into a model per shape
(tootstack.contracts), and refuses a malformed one with InvalidInput naming the field, before any AWS
call (so nothing changes) and without quoting a value.

Unit tier: no processes, no moto. Every AWS API call is trapped (`no_aws`): the handlers are loaded as in
Lambda (tootstack_dev.local.template.LocalFunction) with a fake environment, and a refused event must
reach no AWS API at all. Custom resource requests are answered FAILED through a trapped ResponseURL,
the reason naming the property.

The events below were accepted by the hand parsing these models replace, or made it fail elsewhere
(KeyError, an AWS call with a wrong value, a generic message): each case says what happened before.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import LocalFunction

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
SECRET = "s3cr3t-" + uuid.uuid4().hex     # a value that must never appear in an error
ENV = {
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing", "STACK_NAME": "tc", "CLUSTER_NAME": "tc", "SERVICE_NAMES": "core,web",
    "SCHEDULER_SERVICE": "core", "TOOLBOX_FAMILY": "tc-toolbox", "UPGRADE_LOCK_PARAMETER": "/tc/upgrade/lock",
    "VERSION_PARAMETER": "/tc/mastodon/version", "ADMIN_PENDING_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:p",
    "CRASHLOOP_TABLE": "tc-crashloop", "REDIS_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:r",
    "ELASTICACHE_USER_ID": "u", "ELASTICACHE_USER_GROUP_ID": "g", "REDIS_PROBE_FUNCTION": "probe",
    "SPOT_SERVICE": "web", "ON_DEMAND_SERVICE": "web-od", "METRIC_SERVICE": "web", "FALLBACK_STATE_PARAMETER": "/tc/f",
    "SERVICE_QUEUES": "default=default", "FIRST_BOOT_LOCK_PARAMETER": "/tc/first-boot/lock", "PARAMETER_PREFIX": "/tc/images",
    "REPOSITORIES": json.dumps({"mastodon": "tc/mastodon"}), "POWERTOOLS_SERVICE_NAME": "tootstack",
    "POWERTOOLS_METRICS_NAMESPACE": "tootstack", "POWERTOOLS_TRACE_DISABLED": "true",
}
PLAN = {"previous": {"web": "arn:td/web:1"}, "target": {"web": "arn:td/web:2"}, "toolbox": "arn:td/toolbox:2"}
PREPARED = {"request": "r1", "username": "alice", "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:tc/admin/alice",
            "role": "Owner"}
_handlers: dict[str, object] = {}


class _Context:
    function_name, memory_limit_in_mb, aws_request_id, log_stream_name = "tc", 128, "r", "local"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tc"

    @staticmethod
    def get_remaining_time_in_millis():
        return 600_000


@pytest.fixture
def no_aws(monkeypatch):
    """Every AWS API call fails the test (recorded first); the fake environment of every handler."""
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    calls: list[str] = []

    def trapped(self, operation, params):
        calls.append(operation)
        raise AssertionError(f"AWS called: {operation}")

    monkeypatch.setattr("botocore.client.BaseClient._make_api_call", trapped)
    return calls


def _call(name: str, event):
    if name not in _handlers:
        _handlers[name] = LocalFunction(f"Contract{name}", ROOT / "functions" / name, "app.handler", {}).entrypoint
    return _handlers[name](event, _Context())


REFUSED = [
    # upgrade: eight actions; before, each read event[...] by hand (KeyError, or a bad value sent on to AWS)
    ("upgrade", {"action": "deploy", "execution": "e"}, r"deploy\.plan: Field required"),             # KeyError 'plan'
    ("upgrade", {"action": "register", "version": "v4.7.4"}, r"register\.pinned: Field required"),  # KeyError 'pinned'
    ("upgrade", {"action": "mirror", "version": "4.7"}, r"mirror\.version: String should match"),   # mirrored a tag "4.7"
    ("upgrade", {"action": "check", "plan": PLAN, "phase": "sideways"}, r"check\.phase: Input should be 'bridge' or 'all'"),
    ("upgrade", {"action": "check", "plan": PLAN, "checks": -1}, r"check\.checks: Input should be greater than or equal to 0"),
    ("upgrade", {"action": "rollback", "plan": {"target": {}}}, r"rollback\.plan\.previous: Field required"),  # KeyError
    ("upgrade", {"action": "finish", "version": "v4.7.4"}, r"finish\.execution: Field required"),   # KeyError 'execution'
    ("upgrade", {"action": "release", "execution": ""}, r"release\.execution: String should have at least 1 character"),
    ("upgrade", {"action": "prepare", "input": {"version": "v4.7.4"}}, r"prepare\.execution: Field required"),
    ("upgrade", {"action": "upgrade"}, r"action: unknown value, expected one of 'prepare', 'mirror'"),
    ("upgrade", ["prepare"], r"the event must be a JSON object, got list"),
    # create-admin: a Catch's error that is not an object was ignored, and the staged secret then settled
    ("create_admin", {"action": "finish", "outcome": "failed", "state": {"prepared": PREPARED, "error": "boom"}},
     r"finish\.state\.error: Input should be a valid dictionary"),
    ("create_admin", {"action": "finish", "outcome": "created", "state": {"prepared": dict(PREPARED, username="")}},
     r"finish\.state\.prepared\.username: String should have at least 1 character"),
    ("create_admin", {"action": "prepare", "input": {"username": "alice", "email": "a@example.org", "role": "Owner"},
                      "request": 42}, r"prepare\.request: Input should be a valid string"),   # str(42) became the request id
    # run-oneoff: a Catch's error whose fields are not text was read on (and the stack's secrets listed)
    ("run_oneoff", {"action": "report", "state": {"error": {"Error": 1, "Cause": "x"}}},
     r"report\.state\.error\.Error: Input should be a valid string"),
    ("run_oneoff", {"action": "execute", "input": {"command": ["tootctl"]}}, r"action: unknown value, expected one of 'validate', 'report'"),
    # maintenance gate
    ("maintenance_gate", {"input": ["media"]}, r"input: Input should be a valid dictionary"),
    # crashloop detector: a nudge's episode was compared as text after a DynamoDB read; resume counts
    ("crashloop_detector", {"action": "nudge", "service": "tc/web", "episode": "yesterday", "seq": 1, "id": "n1"},
     r"nudge\.episode: Input should be a valid datetime"),
    ("crashloop_detector", {"action": "nudge", "service": "tc/web", "episode": "2026-11-01T10:00:00Z", "seq": True, "id": "n1"},
     r"nudge\.seq: Input should be a valid integer"),
    ("crashloop_detector", {"action": "resume", "service": "web", "desired_count": "2"},
     r"resume\.desired_count: Input should be a valid integer"),
    ("crashloop_detector", {"action": "halt", "service": "web"}, r"action: unknown value, expected one of 'resume', 'nudge'"),
    # redis rotation: an unknown step was refused only after DescribeSecret
    ("redis_rotation", {"Step": "rotateSecret", "SecretId": "arn:aws:secretsmanager:us-east-1:1:secret:r", "ClientRequestToken": "t"},
     r"Step: Input should be 'createSecret', 'setSecret', 'testSecret' or 'finishSecret'"),
    ("redis_rotation", {"Action": "Resume"}, r"Action: unknown value, expected one of 'setup', 'resume'"),
    # the first-boot lock (its own function now; before: the secrets function's "Execution must be the execution ARN")
    ("first_boot_lock", {"Action": "lock", "Execution": "first-boot-1"}, r"lock request: Execution: String should match pattern"),
    ("first_boot_lock", {"Action": "release", "Execution": "arn:aws:states:us-east-1:1:execution:tc-first-boot:e"},
     r"Action: Input should be 'lock' or 'unlock'"),
    # secrets bootstrap, direct (before: taken for a custom resource request, refused for its missing ResponseURL)
    ("secrets_bootstrap", {"Action": "bootstrap "}, r"Action: Input should be 'bootstrap'"),
    # mirror, direct
    ("mirror", {"images": "ghcr.io/mastodon/mastodon:v4.7.4"}, r"images: Input should be a valid list"),
    # scheduled functions read nothing from their event, but it must be an object (before: ignored, AWS called)
    ("queue_latency", "tick", r"queue latency invocation: the event must be a JSON object, got str"),
    ("spot_fallback", [1], r"spot fallback invocation: the event must be a JSON object, got list"),
    ("preflight", 7, r"preflight invocation: the event must be a JSON object, got int"),
]


@pytest.mark.parametrize("name, event, message", REFUSED, ids=[f"{c[0]}-{i}" for i, c in enumerate(REFUSED)])
def test_a_malformed_event_is_refused_naming_the_field_before_any_aws_call(no_aws, name, event, message):
    with pytest.raises(InvalidInput) as refused:
        _call(name, event)
    assert re.search(message, str(refused.value)), str(refused.value)
    assert no_aws == [], "refused after an AWS call"


def _request(resource_type: str, properties: dict, request_type: str = "Create") -> dict:
    return {"RequestType": request_type, "ResponseURL": "https://cloudformation-custom-resource-response.example/r",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/tc/1", "RequestId": str(uuid.uuid4()),
            "LogicalResourceId": "Thing", "ResourceType": resource_type, "PhysicalResourceId": "tc-thing",
            "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:1:function:f", **properties}}


class _Ok:
    def read(self):
        return b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _answers(monkeypatch) -> list[dict]:
    """The answers PUT to the ResponseURL (tootstack.cfn_custom.respond), trapped."""
    answers: list[dict] = []
    monkeypatch.setattr("tootstack.cfn_custom.urllib.request.urlopen", lambda req, timeout: answers.append(json.loads(req.data)) or _Ok())
    return answers


CUSTOM_REFUSED = [
    # before: DescribeStacks, then KeyError 'VersionParameter'
    ("deploy_guard", _request("Custom::VersionGuard", {"ClusterName": "tc", "Services": ["core"]}),
     r"Custom::VersionGuard properties: VersionParameter: Field required"),
    ("deploy_guard", _request("Custom::CoreBridge", {"ClusterName": "tc", "BridgeService": "web", "CoreTaskDefinition": "td",
                                                      "RecordParameter": "/tc/deploy/bridge"}),
     r"Custom::CoreBridge properties: CoreService: Field required"),
    # before: a ValueError from dict(): the list's first element had length 4 where 2 is required
    ("deploy_guard", _request("Custom::ServiceCounts", {"ClusterName": "tc", "Services": ["core"]}),
     r"Custom::ServiceCounts properties: Services: Input should be a valid dictionary"),
    ("deploy_guard", _request("Custom::ServiceGuard", {}), r"unknown resource type: expected one of Custom::ServiceCounts"),
    # before: StartExecution with "first-boot" as the state machine ARN
    ("secrets_bootstrap", _request("Custom::FirstBootStart", {"StartStateMachineArn": "first-boot"}),
     r"Custom::FirstBootStart properties: StartStateMachineArn: String should match pattern"),
    # before: DescribeSecret with a list as the secret id
    ("secrets_bootstrap", _request("Custom::SecretsBootstrap", {"AppSecretArn": [SECRET], "DatabaseSecretArn": "d",
                                                                 "RedisSecretArn": "r"}),
     r"Custom::SecretsBootstrap properties: AppSecretArn: Input should be a valid string"),
    # before: "InvalidInput: "images" must be a non-empty list ..." (not the property's name)
    ("mirror", _request("Custom::ImageMirror", {"Images": "ghcr.io/mastodon/mastodon:v4.7.4"}),
     r"Custom::ImageMirror properties: Images: Input should be a valid list"),
]


@pytest.mark.parametrize("name, event, reason", CUSTOM_REFUSED, ids=[f"{c[0]}-{i}" for i, c in enumerate(CUSTOM_REFUSED)])
def test_a_malformed_custom_resource_is_answered_failed_naming_the_property(no_aws, monkeypatch, name, event, reason):
    answers = _answers(monkeypatch)
    _call(name, event)
    [answer] = answers
    assert answer["Status"] == "FAILED" and re.search(reason, answer["Reason"]), answer["Reason"]
    assert SECRET not in answer["Reason"]
    assert no_aws == [], "refused after an AWS call"


def test_a_delete_is_answered_whatever_its_properties(no_aws, monkeypatch):
    """A stack must stay deletable: Delete reads no property, for any resource type a function serves."""
    answers = _answers(monkeypatch)
    for name, resource_type in [("deploy_guard", "Custom::CoreBridge"), ("deploy_guard", "Custom::Gone"),
                                ("secrets_bootstrap", "Custom::FirstBootStart"), ("mirror", "Custom::ImageMirror")]:
        _call(name, _request(resource_type, {"Images": 3, "StartStateMachineArn": 3}, request_type="Delete"))
    assert [a["Status"] for a in answers] == ["SUCCESS"] * 4
    assert no_aws == []


def test_errors_never_quote_the_values_sent(no_aws):
    """pydantic's messages quote the input only for an unknown discriminator tag; tootstack.contracts lists
    the expected tags instead, and asks pydantic for no input in its errors."""
    events = [
        ("upgrade", {"action": SECRET}),
        ("create_admin", {"action": "finish", "outcome": SECRET, "state": {"prepared": dict(PREPARED, secret_arn=SECRET)}}),
        ("redis_rotation", {"Step": SECRET, "SecretId": SECRET, "ClientRequestToken": SECRET}),
        ("redis_rotation", {"Step": "createSecret", "SecretId": "s", "ClientRequestToken": {"password": SECRET}}),
        ("first_boot_lock", {"Action": "lock", "Execution": SECRET}),
        ("crashloop_detector", {"action": "resume", "service": {"password": SECRET}}),
    ]
    for name, event in events:
        with pytest.raises(InvalidInput) as refused:
            _call(name, event)
        assert SECRET not in str(refused.value), name
    assert no_aws == []


def test_well_formed_events_of_every_shape_parse():
    """The positive control: the payloads the state machines build (statemachines/*.asl.json, with sample
    values for their `.$` paths) and the repository's sample events parse into the model of their shape."""
    from tootstack.crashloop.models import EcsTaskStateChangeEvent, Nudge, Resume, parse_invocation
    from tootstack.first_boot_events import parse_lock_request
    from tootstack.oneoff import events as oneoff
    from tootstack.redis_auth import events as rotation
    from tootstack.secrets import events as secrets
    from tootstack.upgrade import events as upgrade

    samples = {"$.prepared.value.version": "v4.7.4", "$.mirror.value": {"mastodon": "r@sha256:" + "a" * 64},
               "$.plan.value": PLAN, "$.guard.value.checks": 2, "$.guard.value.phase": "bridge",
               "$$.Execution.Name": "e1", "$$.Execution.Id": "arn:aws:states:us-east-1:1:execution:tc-first-boot:e1",
               "$": {"version": "v4.7.4"}, "$.outcome": "created"}
    parsed = {}
    def first_boot(event):
        return parse_lock_request(event) if event.get("Action") in ("lock", "unlock") else secrets.parse_direct(event)

    for machine, parse in [("upgrade", upgrade.parse_step), ("create_admin", oneoff.parse_admin_event),
                           ("run_oneoff", oneoff.parse_oneoff_event), ("first_boot", first_boot)]:
        for payload in _payloads(json.loads((ROOT / "statemachines" / f"{machine}.asl.json").read_text())):
            if machine == "first_boot" and payload.get("Action") not in ("lock", "unlock", "bootstrap"):
                continue   # the mirror's and the rotation function's steps
            event = {k.removesuffix(".$"): samples.get(v, v) if k.endswith(".$") else v for k, v in payload.items()}
            if machine == "create_admin" and event.get("action") == "finish":
                event["state"] = {"prepared": PREPARED}
            if machine == "run_oneoff" and event.get("action") == "report":
                event["state"] = {"validated": {"requested": ["tootctl"]}}
            parsed.setdefault(machine, set()).add(type(parse(event)).__name__)
    assert parsed == {"upgrade": {"Prepare", "Mirror", "Register", "Deploy", "Check", "Rollback", "Finish", "Release"},
                      "create_admin": {"AdminPrepare", "AdminFinish"}, "run_oneoff": {"OneoffValidate", "OneoffReport"},
                      "first_boot": {"Bootstrap", "FirstBootLock"}}
    sample = json.loads((ROOT / "events/crashloop_detector.json").read_text())
    assert isinstance(parse_invocation(sample), EcsTaskStateChangeEvent)
    assert isinstance(parse_invocation({"action": "resume", "service": "web"}), Resume)
    nudge = parse_invocation({"action": "nudge", "service": "tc/web", "episode": "2026-11-01T10:00:00Z", "seq": 1, "id": "n"})
    assert isinstance(nudge, Nudge) and nudge.episode.isoformat() == "2026-11-01T10:00:00+00:00"
    assert isinstance(rotation.parse_rotation_event(json.loads((ROOT / "events/redis_rotation.json").read_text())),
                      rotation.RotationStep | rotation.Setup | rotation.Resume)
    assert isinstance(upgrade.parse_step(json.loads((ROOT / "events/upgrade.json").read_text())), upgrade.Prepare)


def _payloads(definition: dict):
    for state in definition.get("States", {}).values():
        payload = (state.get("Parameters") or {}).get("Payload")
        if isinstance(payload, dict):
            yield payload
        for branch in state.get("Branches", []):
            yield from _payloads(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _payloads(state[key])


def test_rotation_steps_are_the_protocols():
    """The model's steps are the four of the Secrets Manager rotation protocol, as the rotation runs them
    (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html)."""
    from typing import get_args

    from tootstack.redis_auth.events import RotationStep
    from tootstack.redis_auth.rotation import STEPS

    assert get_args(RotationStep.model_fields["Step"].annotation) == STEPS


def test_one_time_format_for_the_crashloop_detector():
    """crashloop.clock is the detector's only reader and writer of times: whole-second UTC ISO 8601."""
    from datetime import datetime, timedelta, timezone

    from tootstack.crashloop.clock import epoch, iso

    assert iso(1793527200.9) == "2026-11-01T10:00:00Z" and epoch("2026-11-01T10:00:00Z") == 1793527200.0
    assert epoch(datetime(2026, 11, 1, 12, tzinfo=timezone(timedelta(hours=2)))) == 1793527200.0
    assert epoch(datetime(2026, 11, 1, 10)) == 1793527200.0          # naive: UTC, whatever the machine's zone
    assert epoch("", default=0.0) == 0.0 and epoch("yesterday", default=0.0) == 0.0
    with pytest.raises(ValueError):
        epoch("yesterday")


def test_the_custom_resource_envelope_is_read_as_powertools_reads_it():
    """parse_request checks the fields CloudFormation always sends, each one Powertools' parser model requires
    too (aws_lambda_powertools/utilities/parser/models/cloudformation_custom_resource.py), and hands the
    request on as Powertools' CloudFormationCustomResourceEvent data class."""
    from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent
    from aws_lambda_powertools.utilities.parser.models import CloudFormationCustomResourceBaseModel

    from tootstack.cfn_custom import IDS, parse_request, problems
    from tootstack.deploy_guard_events import ServiceCounts

    required = {f.alias for f in CloudFormationCustomResourceBaseModel.model_fields.values() if f.is_required()}
    checked = {"RequestType", "ResponseURL", *IDS}
    assert checked <= required
    event = _request("Custom::ServiceCounts", {"ClusterName": "tc", "Services": {"Core": "core"}})
    for field in checked:
        assert field in problems({k: v for k, v in event.items() if k != field})
    request = parse_request(event, ServiceCounts)
    assert isinstance(request.event, CloudFormationCustomResourceEvent) and request.event.request_type == "Create"
    assert request.properties == ServiceCounts(ClusterName="tc", Services={"Core": "core"})

"""What each Lambda handler loads at cold start (functions/*/app.py), asserted on sys.modules, not time.

The timing is bench/lambda_imports.py's job; here: every handler still imports in a fresh interpreter
with tracing on (as in Lambda: `Tracing: Active`, LAMBDA_TASK_ROOT set), and imports only what it uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))
# handlers whose own calls go through httpx (the mirror's registry client) at import time
HTTPX_AT_IMPORT = {"mirror"}


def _modules_after_import(handler: str) -> set[str]:
    directory = ROOT / "functions" / handler
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_TRACE")}
    env.update({"PYTHONPATH": os.pathsep.join([str(directory), str(ROOT / "layers" / "tootstack")]),
                "LAMBDA_TASK_ROOT": str(directory), "AWS_LAMBDA_FUNCTION_NAME": f"test-{handler}",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11", "POWERTOOLS_SERVICE_NAME": "tootstack"})
    proc = subprocess.run([sys.executable, "-c", "import json, sys; import app; print(json.dumps(sorted(sys.modules)))"],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("handler", HANDLERS)
def test_handler_imports_only_the_clients_it_calls(handler):
    """Powertools' Tracer() patches every library the X-Ray SDK supports, importing each installed one
    (aws_xray_sdk/core/patcher.py: SUPPORTED_MODULES; Powertools tracer.py: patch_modules=None -> patch_all);
    the handlers name theirs (tootstack.tracing)."""
    modules = _modules_after_import(handler)
    assert "app" in modules
    assert "requests" not in modules                # no handler calls requests
    assert ("httpx" in modules) == (handler in HTTPX_AT_IMPORT)
    if handler not in HTTPX_AT_IMPORT:
        assert not {"click", "rich"} & modules      # httpx's own command line (where installed), via httpx


def test_crashloop_detector_does_not_import_unrelated_event_models():
    """It parses two EventBridge events; importing any Powertools Parser model runs
    aws_lambda_powertools/utilities/parser/models/__init__.py, which imports every model (S3, SQS, ALB ...)."""
    modules = _modules_after_import("crashloop_detector")
    assert "tootstack.crashloop.models" in modules and "pydantic" in modules
    assert not {m for m in modules if m.startswith("aws_lambda_powertools.utilities.parser")}


def test_create_admin_loads_the_parser_when_it_parses():
    modules = _modules_after_import("create_admin")
    assert "aws_lambda_powertools.utilities.parser" not in modules

    from tootstack.oneoff.admin import validate_admin_request

    request = validate_admin_request({"username": "alice", "email": "alice@example.org", "role": "Owner"})
    assert request.username == "alice"


def _bridge_event() -> dict:
    return {
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "source": "aws.ecs", "account": "123456789012",
        "time": "2026-11-01T10:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:ecs:eu-west-1:123456789012:service/c/web"], "detail-type": "ECS Deployment State Change",
        "replay-name": "replay-1",
        "detail": {"eventType": "ERROR", "eventName": "SERVICE_DEPLOYMENT_FAILED", "deploymentId": "ecs-svc/1",
                   "updatedAt": "2026-11-01T10:00:00Z", "reason": "circuit breaker"},
    }


def test_event_bridge_envelope_is_the_powertools_one():
    """Our envelope declares the fields, aliases and requiredness of Powertools' EventBridgeModel
    (aws_lambda_powertools/utilities/parser/models/event_bridge.py) and reads an event the same way."""
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel as Powertools

    from tootstack.crashloop.models import EventBridgeModel, parse_event

    def shape(model):
        return {name: (f.alias, f.is_required()) for name, f in model.model_fields.items()}

    assert shape(EventBridgeModel) == shape(Powertools)
    raw = _bridge_event()
    theirs, ours = Powertools.model_validate(raw), EventBridgeModel.model_validate(raw)
    assert ours.model_dump(exclude={"detail"}) == theirs.model_dump(exclude={"detail"})
    assert ours.time == datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)
    event = parse_event(raw)
    assert event.service_arn.endswith("service/c/web") and event.detail.eventName == "SERVICE_DEPLOYMENT_FAILED"


@pytest.mark.parametrize("handler", ["preflight", "queue_latency", "spot_fallback", "redis_probe", "mirror"])
def test_pydantic_is_left_to_the_first_event_where_a_cold_start_has_no_room_or_no_use_for_it(handler):
    """pydantic's import costs about a third of `import boto3`. The scheduled functions read no field of
    their event (tootstack.scheduled.require_object), the probe none through a model, and the mirror, the
    largest import, loads its two models on its first event (bench/lambda_imports.py)."""
    assert "pydantic" not in _modules_after_import(handler)


@pytest.mark.parametrize("handler", ["upgrade", "create_admin", "run_oneoff", "maintenance_gate", "redis_rotation",
                                     "secrets_bootstrap", "first_boot_lock", "deploy_guard"])
def test_event_models_are_defined_at_import_and_validators_built_on_first_use(handler):
    """The event models a handler parses (tootstack/**/events.py) are imported with it (tootstack.contracts),
    with `defer_build`: no core schema is built before the first event."""
    code = ("import json, sys; import app; import pydantic; "
            "print(json.dumps(sorted(n for m in list(sys.modules.values()) for n, v in vars(m).items() "
            "if isinstance(v, type) and issubclass(v, pydantic.BaseModel) and v.__module__.endswith('events') "
            "and v.__pydantic_complete__)))")
    directory = ROOT / "functions" / handler
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(directory), str(ROOT / "layers" / "tootstack")]),
               LAMBDA_TASK_ROOT=str(directory), POWERTOOLS_SERVICE_NAME="tootstack")
    proc = subprocess.run([sys.executable, "-c", code], cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == []

"""Shared pieces of the property-based input tests (test_fuzz_*.py): strategies for hostile JSON and
text, the hypothesis settings (deadline-bounded, modest example counts: the whole fuzz set stays well
under a minute on one core), and snapshots of the emulated AWS state and Redis ACLs.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# TOOTSTACK_FUZZ_EXAMPLES=500 for a deeper run by hand; `make test` keeps the modest default.
EXAMPLES = int(os.environ.get("TOOTSTACK_FUZZ_EXAMPLES") or 40)
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=2), database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))

# Values a console user can type that have hurt before or sit on a boundary.
NASTY = st.sampled_from([
    "", " ", "pending", "PENDING", "Pending", "staging", "admin", "²", "４", "٣", "7²", "v４.5.3", "v4.5.3",
    "v999.999.999", "-1", "0", "1e3", "true", "false", "null", "[]", "{}", "alice", "alice\n", "a" * 31,
    "../admin", "alice@example.org", "a@b", "Owner", "Superuser", "--reset_password", "--reset-password=true",
    "%s%n", "\x00", "\u202e", "ǅ", "ｐｅｎｄｉｎｇ", "😀", "x" * 300,
])
TEXT = NASTY | st.text(max_size=40)
SCALARS = st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63) | \
    st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def aws_state(region: str = "us-east-1", account: str = "123456789012") -> dict[str, Any]:
    """Everything the functions under test could change in moto: secrets (every version's labels and a hash
    of its value, tags, deletion), SSM parameters (every version), ECS services (desired count, task
    definition, tags) and task definitions, DynamoDB items. Read from moto's backends in process: the same
    data the APIs serve, at a fraction of the cost of ~20 API calls per snapshot."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.ecs.models import ecs_backends
    from moto.secretsmanager.models import secretsmanager_backends
    from moto.ssm.models import ssm_backends

    secrets = {
        name: ({vid: (sorted(v.get("version_stages") or []), digest(v.get("secret_string")), digest(v.get("secret_binary")))
                for vid, v in secret.versions.items()},
               digest(secret.tags), str(getattr(secret, "deleted_date", None)))
        for name, secret in secretsmanager_backends[account][region].secrets.items()
    }
    parameters = {name: [(p.value, p.version) for p in versions]
                  for name, versions in ssm_backends[account][region]._parameters.items()}
    ecs = ecs_backends[account][region]
    services = {key: (svc.desired_count, svc.task_definition, digest(svc.tags)) for key, svc in ecs.services.items()}
    definitions = {family: sorted(revisions) for family, revisions in ecs.task_definitions.items()}
    tables = {name: sorted(digest(item.to_json()) for item in table.all_items())
              for name, table in dynamodb_backends[account][region].tables.items()}
    return {"secrets": secrets, "parameters": parameters, "services": services, "task_definitions": definitions,
            "tables": tables}


def redis_acl(client: Any) -> list[str]:
    """The server's ACL rules (users, password hashes, permissions), through an open admin connection."""
    return sorted(str(rule) for rule in client.execute_command("ACL", "LIST"))

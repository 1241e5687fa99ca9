"""Withhold log lines that contain a secret before they are echoed into an execution's output.

The values come from the stack's secrets themselves (Secrets Manager), so a line is withheld when it
contains any of them, whatever the command printed. JSON secrets contribute each secret field; fields
that are identifiers rather than secrets (usernames, hosts, public keys) and values too short to be a
credential are not used, so ordinary output is not blanked. Lines that announce a password
("New password: ...") are withheld by pattern as well.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from tootstack.errors import aws_error_code

WITHHELD = "[line withheld: it contains a secret value]"
MIN_SECRET_LENGTH = 8
NOT_SECRET_FIELDS = frozenset({
    "username", "user", "host", "port", "engine", "dbname", "dbinstanceidentifier", "dbclusteridentifier",
    "user_arn", "vapid_public_key", "request", "from_address",
})
PASSWORD_LINE = re.compile(r"(?i)\b(new )?password\s*[:=]\s*\S")


def values_of(secret_string: str) -> set[str]:
    """The secret values held by one SecretString (a plain value, or a JSON object's secret fields)."""
    values: set[str] = set()
    try:
        parsed: Any = json.loads(secret_string)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        for key, value in parsed.items():
            if str(key).lower() in NOT_SECRET_FIELDS or not isinstance(value, (str, int, float)):
                continue
            if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                values.add(value)
    elif isinstance(secret_string, str) and len(secret_string) >= MIN_SECRET_LENGTH:
        values.add(secret_string)
    return values


STAGES = ("AWSCURRENT", "AWSPENDING", "AWSPREVIOUS")


def stack_secret_values(sm: Any, secret_ids: Iterable[str], name_prefix: str | None = None) -> set[str]:
    """Values of every staged version of the given secrets and of every secret whose name starts with
    `name_prefix`: during a rotation or a staged password reset more than one version is a valid credential.
    A secret found by ListSecrets is read under exactly the labels ListSecrets reported for it
    (SecretVersionsToStages); for a secret passed directly the three standard labels are tried."""
    stages: dict[str, set[str]] = {s: set(STAGES) for s in secret_ids if s}
    if name_prefix:
        paginator = sm.get_paginator("list_secrets")
        for page in paginator.paginate(Filters=[{"Key": "name", "Values": [name_prefix]}]):
            for item in page.get("SecretList", []):
                if item["Name"].startswith(name_prefix):
                    labels = {label for labels in (item.get("SecretVersionsToStages") or {}).values() for label in labels}
                    stages.setdefault(item["ARN"], set()).update(labels)
    values: set[str] = set()
    for secret_id, labels in stages.items():
        for stage in sorted(labels):
            try:
                secret = sm.get_secret_value(SecretId=secret_id, VersionStage=stage)
            except Exception as exc:  # no version with that label, or a secret scheduled for deletion
                if aws_error_code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                    continue
                raise
            values |= values_of(secret.get("SecretString", ""))
    return values


def withhold(lines: Iterable[str], secret_values: Iterable[str]) -> list[str]:
    """Each line unchanged, or WITHHELD when it contains a secret value or announces a password."""
    needles = sorted({v for v in secret_values if v}, key=len, reverse=True)
    out = []
    for line in lines:
        if PASSWORD_LINE.search(line) or any(needle in line for needle in needles):
            out.append(WITHHELD)
        else:
            out.append(line)
    return out

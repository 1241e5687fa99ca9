"""Shared pieces of the rehearsal's first-boot stages ("secrets", "redis-auth", "db-setup").

The deployed stack's Lambda functions are already routed to their real handlers (deploy stage). What
the rehearsal changes, and says so: ElastiCache RBAC does not exist locally, so the rotation function
runs the same code with the Redis ACL backend against the real redis-server (ctx.redis), using the
harness's privileged connection (ctx.redis.admin_client()) where ElastiCache would use its API; the
probe and rotation functions trust the stand-in's test CA. Nothing here prints a secret value.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import boto3

from tootstack.redis_auth.backends import AclBackend
from tootstack.redis_auth.credentials import Credential, Endpoint, works
from tootstack_dev.local.redis import rotation_handler

SECRET_IDS = ("AppSecrets", "DatabaseSecret", "RedisSecret", "SmtpSecret")


def read_secret(ctx: Any, logical_id: str) -> dict[str, Any]:
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    return json.loads(sm.get_secret_value(SecretId=ctx.physical(logical_id), VersionStage="AWSCURRENT")["SecretString"])


def secret_version_values(sm: Any, secret_ids: Iterable[str]) -> list[str]:
    """Every string value (12+ characters) of every version of the given JSON secrets: what a leak scan
    must search for (rotated-out versions included)."""
    values: list[str] = []
    for secret_id in secret_ids:
        for version in sm.list_secret_version_ids(SecretId=secret_id)["Versions"]:
            document = json.loads(sm.get_secret_value(SecretId=secret_id, VersionId=version["VersionId"])["SecretString"])
            values += [v for v in document.values() if isinstance(v, str) and len(v) >= 12]
    return values


def leaks(ctx: Any, *haystacks: str) -> int:
    """How many values of the stack's four secrets appear in the haystacks."""
    text = "".join(haystacks)
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    return sum(1 for value in secret_version_values(sm, (ctx.physical(lid) for lid in SECRET_IDS)) if value in text)


def endpoint(ctx: Any) -> Endpoint:
    return Endpoint(ctx.redis.host, ctx.redis.port, tls=bool(ctx.redis.tls), ca_file=ctx.redis.ca_file)


def mastodon_connects(ctx: Any, username: str, password: str) -> bool:
    return works(endpoint(ctx), Credential(username, password))


def route_redis_functions(ctx: Any) -> str:
    """Re-route the rotation function (ACL backend, privileged harness connection) and the probe
    (trusting the stand-in CA); idempotent. Returns the rotation function's name."""
    if ctx.redis_routed:
        return ctx.redis_routed
    rotation_name, probe_name = ctx.physical("RedisRotationFunction"), ctx.physical("RedisProbeFunction")
    stand_in = {"REDIS_CA_FILE": ctx.redis.ca_file or "", "REDIS_TLS": "true" if ctx.redis.tls else "false"}
    ctx.aws.update_route(probe_name, stand_in)
    ctx.aws.update_route(rotation_name, {**stand_in, "REDIS_BACKEND": "acl", "REDEPLOY_WAIT_SECONDS": "5"},
                         handler=rotation_handler(lambda: AclBackend(ctx.redis.admin_client)))
    ctx.redis_routed = rotation_name
    return rotation_name


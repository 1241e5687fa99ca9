"""What the Redis Lambda functions run: configuration from the environment, then one action.

Two functions, because a Lambda attached to the VPC's public subnets gets no public IP and so cannot
reach AWS APIs without a NAT gateway or interface endpoints (which this stack avoids for cost):

- RedisRotationFunction (outside the VPC): the rotation protocol and the first-boot setup; talks to
  Secrets Manager, ECS and ElastiCache. It reaches Redis only through the probe.
- RedisProbeFunction (in the VPC, LambdaSecurityGroup, public subnets): AUTH + PING against the Redis
  endpoint with the credential it is given, over TLS. No AWS API access, no logging of its event.

Environment of the rotation function:
  REDIS_SECRET_ARN            the secret it serves (events for other secrets are refused)
  REDIS_BACKEND               "elasticache" (RBAC; default) or "acl" (self-hosted Redis: needs network access)
  ELASTICACHE_USER_ID, ELASTICACHE_USER_GROUP_ID, ELASTICACHE_REPLICATION_GROUP_ID,
  ELASTICACHE_ENGINE ("valkey")   (elasticache)
  REDIS_ADMIN_SECRET_ARN      (acl) {"username","password"} of a user allowed to run ACL commands
  REDIS_HOST, REDIS_PORT, REDIS_TLS ("true"), REDIS_CA_FILE (optional)   (acl, or direct verification)
  REDIS_PROBE_FUNCTION        name/ARN of the probe (when set, verification goes through it)
  CLUSTER_NAME, SERVICE_NAMES (comma separated)  services to redeploy before the old password is retired
  REDEPLOY_WAIT_SECONDS       upper bound of the wait (also bounded by the Lambda's remaining time)
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from tootstack.clients import ClientCache
from tootstack.errors import InvalidInput, TootstackError, aws_error_code
from tootstack.redis_auth.backends import AclBackend, ElastiCacheRbacBackend, RedisAuthBackend
from tootstack.redis_auth.credentials import AuthenticationFailed, Credential, Endpoint, invoke_probe, verify
from tootstack.redis_auth.redeploy import EcsRedeployer
from tootstack.redis_auth.rotation import RedisRotation, check_secret_matches

_MARGIN_SECONDS = 60


def endpoint_from_env(env: Mapping[str, str]) -> Endpoint:
    host = env.get("REDIS_HOST")
    if not host:
        raise InvalidInput("REDIS_HOST is not set")
    try:
        port = int(env.get("REDIS_PORT") or 6379)
    except ValueError:
        raise InvalidInput("REDIS_PORT must be a number") from None
    return Endpoint(host, port, tls=(env.get("REDIS_TLS", "true").lower() != "false"), ca_file=env.get("REDIS_CA_FILE") or None)


def probe_verifier(function: str, client: Any) -> Callable[[Credential, str], None]:
    """Verify through the in-VPC probe function with `client` (a Lambda client; synchronous invoke, its
    payload is not stored or logged)."""

    def check(credential: Credential, what: str) -> None:
        invoke_probe(client, function, {"username": credential.username, "password": credential.password, "what": what}, what)

    return check


def backend_from_env(env: Mapping[str, str], client: Callable[[str], Any]) -> RedisAuthBackend:
    """`client`: boto3 client by service name (a handler's ClientCache)."""
    kind = (env.get("REDIS_BACKEND") or "elasticache").lower()
    if kind == "elasticache":
        user_id, group_id = env.get("ELASTICACHE_USER_ID"), env.get("ELASTICACHE_USER_GROUP_ID")
        if not user_id or not group_id:
            raise InvalidInput("ELASTICACHE_USER_ID and ELASTICACHE_USER_GROUP_ID are required for the elasticache backend")
        return ElastiCacheRbacBackend(client("elasticache"), user_id, group_id,
                                      replication_group_id=env.get("ELASTICACHE_REPLICATION_GROUP_ID") or None,
                                      engine=env.get("ELASTICACHE_ENGINE") or "valkey")
    if kind == "acl":
        admin_arn = env.get("REDIS_ADMIN_SECRET_ARN")
        if not admin_arn:
            raise InvalidInput("REDIS_ADMIN_SECRET_ARN is required for the acl backend")
        from tootstack.secrets.bootstrap import read_json_secret   # clear errors for a missing or non-JSON secret

        admin = Credential.from_document(read_json_secret(client("secretsmanager"), admin_arn)[0], "Redis admin secret")
        endpoint = endpoint_from_env(env)
        return AclBackend(lambda: endpoint.client(admin))
    raise InvalidInput(f"REDIS_BACKEND must be 'elasticache' or 'acl', not {kind!r}")


def rotation_from_env(env: Mapping[str, str], remaining_seconds: float | None = None,
                      backend: RedisAuthBackend | None = None, verifier: Callable[[Credential, str], None] | None = None,
                      client: Callable[[str], Any] | None = None) -> RedisRotation:
    """`client`: boto3 client by service name; a handler passes its ClientCache so warm invocations reuse them."""
    client = client or ClientCache()
    secret_arn = env.get("REDIS_SECRET_ARN")
    if not secret_arn:
        raise InvalidInput("REDIS_SECRET_ARN is not set")
    sm = client("secretsmanager")
    if verifier is None:
        if env.get("REDIS_PROBE_FUNCTION"):
            verifier = probe_verifier(env["REDIS_PROBE_FUNCTION"], client("lambda"))
        else:
            endpoint = endpoint_from_env(env)
            verifier = lambda cred, what: verify(endpoint, cred, what)  # noqa: E731 - a one-line closure over this endpoint
    redeployer = None
    services = [s.strip() for s in (env.get("SERVICE_NAMES") or "").split(",") if s.strip()]
    if services:
        if not env.get("CLUSTER_NAME"):
            raise InvalidInput("SERVICE_NAMES needs CLUSTER_NAME")
        wait = float(env.get("REDEPLOY_WAIT_SECONDS") or 600)
        if remaining_seconds is not None:
            wait = max(0.0, min(wait, remaining_seconds - _MARGIN_SECONDS))
        redeployer = EcsRedeployer(client("ecs"), env["CLUSTER_NAME"], services, wait_seconds=wait)
    return RedisRotation(sm, secret_arn, backend or backend_from_env(env, client), verifier, redeployer)


def handle(event: Any, rotation: RedisRotation) -> dict[str, str]:
    """A Secrets Manager rotation event ({"Step","SecretId","ClientRequestToken"}), {"Action": "setup"} or
    {"Action": "resume"}: a model of tootstack.redis_auth.events, or the raw event, parsed here into one
    (InvalidInput naming the field). Imported here: the probe function imports this module and no model."""
    from tootstack.redis_auth import events

    request = event if isinstance(event, events.RotationStep | events.Setup | events.Resume) else events.parse_rotation_event(event)
    if isinstance(request, events.Setup):
        return rotation.setup()
    if isinstance(request, events.Resume):
        return rotation.resume()
    secret_id = request.SecretId
    try:
        described = rotation.sm.describe_secret(SecretId=secret_id)
    except Exception as exc:  # botocore ClientError: a secret that does not exist, or a malformed id
        if aws_error_code(exc) not in ("ResourceNotFoundException", "ValidationException", "InvalidParameterException"):
            raise
        raise InvalidInput(f"this function rotates {rotation.secret_id}; secret {secret_id[:200]!r} does not exist") from None
    check_secret_matches(described, rotation.secret_id)
    return rotation.run_step(request.Step, request.ClientRequestToken, described)


def probe(event: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The probe function's work: AUTH + PING; the answer says ok or why not, never the password."""
    env = os.environ if env is None else env
    try:
        credential = Credential.from_document(event, "probe event")
        verify(endpoint_from_env(env), credential, str(event.get("what") or "credential"))
    except AuthenticationFailed as exc:
        return {"ok": False, "error": "AuthenticationFailed", "message": str(exc)}
    except TootstackError as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    return {"ok": True}

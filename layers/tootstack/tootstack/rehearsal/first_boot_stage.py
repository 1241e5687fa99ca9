"""Shared pieces of the rehearsal's first-boot stages ("secrets", "redis-auth", "db-setup").

The deployed stack's Lambda functions are already routed to their real handlers (deploy stage). What
the rehearsal changes, and says so: ElastiCache RBAC does not exist locally, so the rotation function
runs the same code with the Redis ACL backend against the real redis-server (ctx.redis), using the
harness's privileged connection (ctx.redis.admin_client()) where ElastiCache would use its API; the
probe and rotation functions trust the stand-in's test CA. Nothing here prints a secret value.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from tootstack.errors import TootstackError
from tootstack.local.template import local_functions
from tootstack.redis_auth.backends import AclBackend
from tootstack.redis_auth.credentials import Credential, Endpoint, works
from tootstack.redis_auth.entry import handler_with_backend

SECRET_IDS = ("AppSecrets", "DatabaseSecret", "RedisSecret", "SmtpSecret")


def physical(ctx: Any, logical_id: str) -> str:
    value = ctx.physical_ids.get(logical_id)
    if not value:
        raise TootstackError(f"{logical_id} is not in the deployed stack")
    return value


def secret_arn(ctx: Any, logical_id: str) -> str:
    """The secret's ARN: moto's or the rehearsal's stand-in secret (the functions' environment holds it)."""
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    return sm.describe_secret(SecretId=physical(ctx, logical_id))["ARN"]


def read_secret(ctx: Any, logical_id: str) -> dict[str, Any]:
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    return json.loads(sm.get_secret_value(SecretId=physical(ctx, logical_id), VersionStage="AWSCURRENT")["SecretString"])


def all_secret_values(ctx: Any) -> list[str]:
    """Every value of every version of the four secrets (what a leak scan must search for)."""
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    values: list[str] = []
    for logical_id in SECRET_IDS:
        secret_id = physical(ctx, logical_id)
        for version in sm.list_secret_version_ids(SecretId=secret_id)["Versions"]:
            document = json.loads(sm.get_secret_value(SecretId=secret_id, VersionId=version["VersionId"])["SecretString"])
            values += [v for v in document.values() if isinstance(v, str) and len(v) >= 12]
    return values


def leaks(ctx: Any, *haystacks: str) -> int:
    text = "".join(haystacks)
    return sum(1 for value in all_secret_values(ctx) if value in text)


def endpoint(ctx: Any) -> Endpoint:
    return Endpoint(ctx.redis.host, ctx.redis.port, tls=bool(ctx.redis.tls), ca_file=ctx.redis.ca_file)


def mastodon_connects(ctx: Any, username: str, password: str) -> bool:
    return works(endpoint(ctx), Credential(username, password))


def route_redis_functions(ctx: Any) -> str:
    """Re-route the rotation function (ACL backend, privileged harness connection) and the probe
    (trusting the stand-in CA); idempotent. Returns the rotation function's name."""
    if ctx.extras.get("redis_routed"):
        return ctx.extras["redis_routed"]
    lambda_client = boto3.client("lambda", region_name=ctx.region)
    functions = local_functions(ctx.sam_template, ctx.root)
    rotation_name, probe_name = physical(ctx, "RedisRotationFunction"), physical(ctx, "RedisProbeFunction")

    def env(name: str) -> dict[str, str]:
        variables = lambda_client.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {})
        return {**variables, "REDIS_CA_FILE": ctx.redis.ca_file or "", "REDIS_TLS": "true" if ctx.redis.tls else "false"}

    ctx.aws.route_function(probe_name, functions["RedisProbeFunction"], environment=env(probe_name))
    rotation_env = {**env(rotation_name), "REDIS_BACKEND": "acl", "REDEPLOY_WAIT_SECONDS": "5"}
    ctx.aws.route_function(rotation_name, handler_with_backend(lambda: AclBackend(ctx.redis.admin_client)), environment=rotation_env)
    ctx.extras["redis_routed"] = rotation_name
    return rotation_name


def first_boot_state_machine(ctx: Any) -> str:
    """FirstBootStateMachine, runnable: moto's CloudFormation neither applies DefinitionSubstitutions nor
    keeps the machine under its physical id, so it is created from statemachines/first_boot.asl.json
    (unchanged) with the template's substitutions resolved against the deployed resources."""
    if ctx.extras.get("first_boot_state_machine"):
        return ctx.extras["first_boot_state_machine"]
    from tootstack.rehearsal.day2_common import _resolve

    resource = ctx.sam_template["Resources"]["FirstBootStateMachine"]
    profile = ctx.parameters.get("Profile", ctx.sam_template.get("Parameters", {}).get("Profile", {}).get("Default", "standard"))
    conditions = {"IsMicro": profile == "micro"}
    declared = ctx.sam_template.get("Parameters", {})

    def resolve(value: Any) -> str:
        if isinstance(value, dict) and "Fn::If" in value:
            name, when_true, when_false = value["Fn::If"]
            if name not in conditions:
                raise TootstackError(f"condition {name} is not known to the rehearsal")
            return resolve(when_true if conditions[name] else when_false)
        if isinstance(value, dict) and isinstance(value.get("Fn::GetAtt"), (list, str)):
            target = value["Fn::GetAtt"]
            logical, attribute = target.split(".", 1) if isinstance(target, str) else target
            if attribute == "Name" and ctx.sam_template["Resources"][logical]["Type"] == "AWS::ECS::Service":
                return physical(ctx, logical).rsplit("/", 1)[-1]
        if isinstance(value, dict) and value.get("Ref") in declared:
            name = value["Ref"]
            return str(ctx.parameters.get(name, declared[name].get("Default", "")))
        return _resolve(ctx, value)

    substitutions = {key: resolve(value) for key, value in resource["Properties"]["DefinitionSubstitutions"].items()}
    arn = ctx.aws.create_state_machine_from_file(ctx.root / resource["Properties"]["DefinitionUri"],
                                                 f"{ctx.stack_name}-first-boot-rehearsal", substitutions)
    ctx.extras["first_boot_state_machine"] = arn
    return arn

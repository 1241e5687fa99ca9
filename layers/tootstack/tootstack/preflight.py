"""Preflight: is the deployed stack wired the way Mastodon needs it? Read-only checks, no secret values.

Checks (each ok / warn / fail with a one-line detail):
- services: every ECS service of the cluster exists, with desired/running counts and rollout state;
- secrets: every ECS `secrets` reference of those services' task definitions exists (metadata only:
  DescribeSecret / DescribeParameters, never a value);
- images: task definitions pull from ECR, not from Docker Hub (warn: rate limits on restarts);
- email: the SES identity is verified and DKIM signing is on (warn while pending).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from tootstack.errors import InvalidInput

OK, WARN, FAIL = "ok", "warn", "fail"
_ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/")


@dataclass
class Check:
    name: str
    status: str
    detail: str


def run_preflight(cluster: str, ses_identity: str | None, region: str | None = None) -> dict[str, Any]:
    if not cluster:
        raise InvalidInput("preflight needs the ECS cluster name (environment CLUSTER_NAME)")
    ecs = boto3.client("ecs", region_name=region)
    checks: list[Check] = []
    services = _services(ecs, cluster)
    checks.append(_service_check(cluster, services))
    task_definitions = [
        ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        for arn in sorted({s["taskDefinition"] for s in services})
    ]
    checks.append(_secrets_check(task_definitions, region))
    checks.append(_images_check(task_definitions))
    checks.append(_email_check(ses_identity, region))
    return {
        "ok": all(c.status != FAIL for c in checks),
        "cluster": cluster,
        "checks": [asdict(c) for c in checks],
    }


def _services(ecs: Any, cluster: str) -> list[dict[str, Any]]:
    arns: list[str] = []
    for page in ecs.get_paginator("list_services").paginate(cluster=cluster):
        arns += page["serviceArns"]
    services: list[dict[str, Any]] = []
    for start in range(0, len(arns), 10):  # DescribeServices takes at most 10
        services += ecs.describe_services(cluster=cluster, services=arns[start : start + 10])["services"]
    return services


def _service_check(cluster: str, services: list[dict[str, Any]]) -> Check:
    if not services:
        return Check("services", FAIL, f"no ECS services in cluster {cluster}")
    parts, status = [], OK
    for service in sorted(services, key=lambda s: s["serviceName"]):
        rollout = next((d.get("rolloutState") for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        parts.append(f"{service['serviceName']} {service.get('runningCount', 0)}/{service.get('desiredCount', 0)}")
        if rollout == "FAILED":
            status = FAIL
            parts[-1] += " (deployment FAILED)"
        elif service.get("runningCount", 0) < service.get("desiredCount", 0) and status == OK:
            status = WARN
    return Check("services", status, "running/desired: " + ", ".join(parts))


def _secrets_check(task_definitions: list[dict[str, Any]], region: str | None) -> Check:
    references = sorted(
        {
            secret["valueFrom"]
            for td in task_definitions
            for container in td.get("containerDefinitions", [])
            for secret in container.get("secrets", [])
        }
    )
    if not references:
        return Check("secrets", WARN, "task definitions reference no secrets")
    secretsmanager = boto3.client("secretsmanager", region_name=region)
    ssm = boto3.client("ssm", region_name=region)
    missing = [ref for ref in references if not _secret_exists(ref, secretsmanager, ssm)]
    if missing:
        return Check("secrets", FAIL, f"{len(missing)} of {len(references)} secret references missing: {', '.join(missing)}")
    return Check("secrets", OK, f"all {len(references)} secret references exist")


def _secret_exists(reference: str, secretsmanager: Any, ssm: Any) -> bool:
    try:
        if ":secretsmanager:" in reference:
            # arn:aws:secretsmanager:region:account:secret:name-suffix[:json-key:version-stage:version-id]
            secret_id = ":".join(reference.split(":")[:7])
            secretsmanager.describe_secret(SecretId=secret_id)
            return True
        name = reference.split(":parameter", 1)[1] if ":parameter" in reference else reference
        found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])["Parameters"]
        return bool(found)
    except ClientError:
        return False


def _images_check(task_definitions: list[dict[str, Any]]) -> Check:
    images = sorted({c["image"] for td in task_definitions for c in td.get("containerDefinitions", [])})
    outside = [image for image in images if not _ECR_IMAGE.match(image)]
    if outside:
        return Check("images", WARN, f"not pulled from ECR (registry rate limits on restarts): {', '.join(outside)}")
    return Check("images", OK, f"all {len(images)} images come from ECR")


def _email_check(identity: str | None, region: str | None) -> Check:
    if not identity:
        return Check("email", WARN, "no SES identity configured (environment SES_IDENTITY)")
    sesv2 = boto3.client("sesv2", region_name=region)
    try:
        found = sesv2.get_email_identity(EmailIdentity=identity)
    except ClientError as exc:
        return Check("email", FAIL, f"SES identity {identity}: {exc.response['Error']['Code']}")
    dkim = found.get("DkimAttributes", {})
    if not found.get("VerifiedForSendingStatus"):
        return Check("email", WARN, f"SES identity {identity} not verified yet (DKIM {dkim.get('Status', 'unknown')})")
    if not dkim.get("SigningEnabled"):
        return Check("email", WARN, f"SES identity {identity} verified, DKIM signing off")
    return Check("email", OK, f"SES identity {identity} verified with DKIM")

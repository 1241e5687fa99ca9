"""Rehearsal stage "upgrade": the deployed release (v4.5.2, samconfig.toml [rehearsal]) -> the template's
default release (MastodonImage's default tag) through the deployed UpgradeStateMachine.

The release's images are pushed into the "Docker Hub" stand-in; the upgrade Lambda (its real handler) is
pointed at the stand-in registries (the "Docker Hub" credentials in the stack's mirror credentials secret, the
"ECR" one named by moto's ECR) and its guard's Wait states pass in emulated time. ECS deployments complete as ECS reports them (tootstack_dev.local.ecs_deployments). Checked: every
service on a task definition pinned to the mirrored digest, pre- then post-deployment migrations, the
scheduler replaced stop-first, the version recorded, the lock released; then a downgrade is refused.
Where web is autoscaled (every stack since the scalable targets exist from the first deploy), also: the core's stop-first restart is bridged by a web
task on the new version, and web's autoscaling minimum is given back.
"""

from __future__ import annotations

import json

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.images import push_image
from tootstack_dev.rehearsal.day2_common import toolbox_behavior
from tootstack.upgrade.version import parse_version, version_of_image

NAME = "upgrade"


def upgrade_path(sam_template: dict, parameters: dict[str, str]) -> tuple[str, str]:
    """(deployed version, target version): the MastodonImage the rehearsal deployed, and the template's default
    release. An upgrade must go forward: a rehearsal deployed at (or past) the default has nothing to rehearse."""
    default = sam_template["Parameters"]["MastodonImage"]["Default"]
    deployed = parameters.get("MastodonImage", default)
    source, target = version_of_image(deployed), version_of_image(default)
    if not source or not target or parse_version(target) <= parse_version(source):
        raise TootstackError(f"the rehearsal deployed {deployed}: nothing to upgrade to {default} (deploy an older "
                             "MastodonImage, as samconfig.toml [rehearsal] does)")
    return source, target


def run(ctx) -> str:
    arn, function = ctx.physical("UpgradeStateMachine"), ctx.physical("UpgradeFunction")
    hub, ecr = ctx.hub, ctx.ecr
    source, target = upgrade_path(ctx.sam_template, ctx.parameters)
    for upstream in ("mastodon/mastodon", "mastodon/mastodon-streaming"):
        push_image(hub, upstream, target, [8192], platforms=("linux/amd64", "linux/arm64"))
    # Docker Hub credentials as an operator stores them (MirrorSourceCredentialsSecretArn, docker's config.json
    # shape); the destination is the account's ECR registry, which moto names (the ECR stand-in, runner.py).
    credentials = json.dumps({"auths": {hub.host_port: {"username": hub.username, "password": hub.password}}})
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    # The stack was deployed with this secret as MirrorSourceCredentialsSecretArn (deploy stage), so the
    # roles' grants on it are the template's own.
    secret = ctx.parameters.get("MirrorSourceCredentialsSecretArn")
    if secret:
        sm.put_secret_value(SecretId=secret, SecretString=credentials)
    else:
        secret = sm.create_secret(Name=f"{ctx.stack_name}/rehearsal/mirror-credentials", SecretString=credentials)["ARN"]
    # The upgrade's sources and destinations, as the template would set them for registries at these addresses:
    # the stack's ECR repositories (their deployed URIs) on the "ECR" stand-in.
    deployed = boto3.client("lambda", region_name=ctx.region).get_function_configuration(
        FunctionName=function)["Environment"]["Variables"]
    ctx.aws.update_route(function, {
        "IMAGE_SOURCES": f"mastodon={hub.host_port}/mastodon/mastodon,streaming={hub.host_port}/mastodon/mastodon-streaming",
        "IMAGE_DESTINATIONS": _on_registry(deployed["IMAGE_DESTINATIONS"], ecr.host_port),
        "MIRROR_CREDENTIALS_SECRET_ARN": secret,
    })

    ctx.aws.emulate_time(arn)   # the guard's 30 s waits between rollout checks pass at once

    ecs = boto3.client("ecs", region_name=ctx.region)
    web_target = _web_scalable_target(ctx, ecs)
    migrations: list[str] = []

    def toolbox(run) -> TaskResult:
        migrations.append("pre" if run.environment.get("SKIP_POST_DEPLOYMENT_MIGRATIONS") == "true" else "post")
        return TaskResult(0, ["== migrated =="])

    with toolbox_behavior(ctx, toolbox):
        done = ctx.aws.run_state_machine(arn, {"version": target}, timeout=45)
        if done.status != "SUCCEEDED":
            raise TootstackError(f"upgrade {source} -> {target}: {done.status} {done.error}: {done.cause}")
        if (done.output or {}).get("previous") != source:
            raise TootstackError(f"the upgrade started from {(done.output or {}).get('previous')}, not the deployed {source}")
        ctx.upgrade_output = done.output or {}
        if migrations != ["pre", "post"]:
            raise TootstackError(f"migrations ran as {migrations}, expected pre then post")
        pinned = {}
        for service, td in (done.output or {}).get("task_definitions", {}).items():
            images = [c["image"] for c in ecs.describe_task_definition(taskDefinition=td)["taskDefinition"]["containerDefinitions"]]
            if not any(i.startswith(f"{ecr.host_port}/") and "@sha256:" in i for i in images):
                raise TootstackError(f"{service}: {td} is not pinned to a mirrored digest: {images}")
            pinned[service] = td
        bridged = ""
        if web_target is not None:
            guards = [json.loads(e["stateExitedEventDetails"]["output"])["guard"]["value"]["status"]
                      for e in done.history if e.get("stateExitedEventDetails", {}).get("name") == "Guard"]
            if "bridged" not in guards:
                raise TootstackError(f"the core restart was not bridged by a web task (guard: {guards})")
            if _min_capacity(ctx, web_target) != 0:
                raise TootstackError("web's autoscaling minimum was not given back after the upgrade")
            bridged = "; core restart bridged by a web task on the new version, web minimum back to 0"
        downgrade = ctx.aws.run_state_machine(arn, {"version": source}, timeout=30)
        if downgrade.status != "FAILED" or downgrade.error != "InvalidInput":
            raise TootstackError(f"downgrade not refused: {downgrade.status} {downgrade.error}")
    return (f"{source} -> {target}: {len(pinned)} services on task definitions pinned to mirrored digests, migrations "
            f"pre -> post, version recorded, lock released{bridged}; downgrade back to {source} refused")


def _on_registry(pairs: str, registry: str) -> str:
    """`role=<registry>/<repository>,...` with every repository moved to `registry`."""
    return ",".join(f"{role}={registry}/{uri.split('/', 1)[1]}" for role, uri in
                    (item.split("=", 1) for item in pairs.split(",") if "=" in item))


def _web_scalable_target(ctx, ecs) -> str | None:
    """web's scalable target when the stack has one (the deploy stage registers it in moto)."""
    cluster = ctx.physical("Cluster").split("/")[-1]
    web = ecs.describe_services(cluster=cluster, services=[ctx.physical("WebService")])["services"][0]["serviceName"]
    resource_id = f"service/{cluster}/{web}"
    found = boto3.client("application-autoscaling", region_name=ctx.region).describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[resource_id])["ScalableTargets"]
    return resource_id if found else None


def _min_capacity(ctx, resource_id: str) -> int:
    found = boto3.client("application-autoscaling", region_name=ctx.region).describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[resource_id])["ScalableTargets"]
    return found[0]["MinCapacity"]

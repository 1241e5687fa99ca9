"""Upgrade Lambda (statemachines/upgrade.asl.json): thin handler over tootstack.upgrade.steps.

{"action": "prepare", "input": {"version": "v4.5.3"}, "execution": "<execution name>"} and then
"mirror", "register", "deploy", "check", "rollback", "finish", "release" with the state the machine
carries (names, ARNs, digests; never a secret).
"""

import json
import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.crashloop import is_halted
from tootstack.errors import InvalidInput
from tootstack.clients import ClientCache
from tootstack.upgrade import steps

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls

_client = ClientCache()  # one boto3 client per service, reused by warm invocations


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def _config() -> steps.UpgradeConfig:
    sources, dests = _pairs(os.environ.get("IMAGE_SOURCES", "")), _pairs(os.environ.get("IMAGE_DESTINATIONS", ""))
    return steps.UpgradeConfig(
        cluster=os.environ["CLUSTER_NAME"],
        services=[s for s in os.environ["SERVICE_NAMES"].split(",") if s],
        scheduler_service=os.environ["SCHEDULER_SERVICE"],
        toolbox_family=os.environ["TOOLBOX_FAMILY"],
        lock_parameter=os.environ["UPGRADE_LOCK_PARAMETER"],
        version_parameter=os.environ["VERSION_PARAMETER"],
        images={role: {"source": sources[role], "dest": dests[role]} for role in sources if role in dests},
        max_checks=int(os.environ.get("GUARD_MAX_CHECKS", "60")),
        deployed_image=os.environ.get("DEPLOYED_IMAGE", ""),
        deployed_streaming_image=os.environ.get("DEPLOYED_STREAMING_IMAGE", ""),
        bridge_service=os.environ.get("BRIDGE_SERVICE", ""),
        task_families=[f for f in os.environ.get("TASK_FAMILIES", "").split(",") if f],
    )


def _mirror_credentials() -> dict:
    """Source: each registry host gets only its own credentials from the secret (the mirror's
    MirrorSourceCredentialsSecretArn shapes, tootstack.mirror.auth.parse_source_credentials), anonymous
    otherwise; destination: the ECR token, or the secret's `dest` (local rehearsal registries)."""
    from tootstack.mirror.auth import credential_pair, parse_source_credentials

    kwargs = {"plain_http": os.environ.get("MIRROR_PLAIN_HTTP") == "true"}
    secret_id = os.environ.get("MIRROR_CREDENTIALS_SECRET_ARN")
    creds = dict(parameters.get_secret(secret_id, transform="json", max_age=60) if secret_id else {})
    dest = creds.pop("dest", None)
    kwargs["keyed_src_creds"] = parse_source_credentials(creds.get("source", creds))
    if dest:
        kwargs["dest_creds"] = credential_pair(dest, "'dest'", what="mirror credentials secret")
    else:
        from tootstack.mirror.service import ecr_login

        _, kwargs["dest_creds"] = ecr_login(_client("ecr"))
    return kwargs


def _mirror_image(source: str, destination: str, keyed_src_creds: dict, **kwargs):
    """mirror_image with the source registry's own credentials only."""
    from tootstack.mirror import mirror_image
    from tootstack.mirror.auth import credentials_for
    from tootstack.mirror.refs import parse_ref

    return mirror_image(source, destination, src_creds=credentials_for(parse_ref(source).registry, keyed_src_creds), **kwargs)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    if not isinstance(event, dict):
        raise InvalidInput("event must be a JSON object with an 'action'")
    cfg = _config()
    ecs, ssm = _client("ecs"), _client("ssm")
    halted = lambda name: is_halted(name, cluster=cfg.cluster, ecs=ecs)  # noqa: E731 - a one-line closure over this request's cluster and client
    action = event.get("action")
    if action == "prepare":
        execution = event.get("execution")
        if not isinstance(execution, str) or not execution:
            raise InvalidInput("prepare needs the execution name as 'execution'")
        result = steps.prepare(event.get("input"), execution, ecs=ecs, ssm=ssm, cfg=cfg, is_halted=halted,
                               sfn=_client("stepfunctions"), execution_arn=event.get("execution_arn", ""),
                               autoscaling=_client("application-autoscaling"))
        result["poll_seconds"] = int(os.environ.get("GUARD_POLL_SECONDS", "30"))
    elif action == "mirror":
        tracer.patch(tracing.REGISTRY_CLIENT)   # the registry client's calls, traced from this step on
        result = steps.mirror(event["version"], cfg, _mirror_image, **_mirror_credentials())
    elif action == "register":
        result = steps.register(event["version"], event["pinned"], ecs=ecs, cfg=cfg)
    elif action == "deploy":
        result = steps.deploy(event["plan"], ecs=ecs, cfg=cfg, ssm=ssm, autoscaling=_client("application-autoscaling"),
                              execution=event.get("execution", ""))
    elif action == "check":
        result = steps.check(event["plan"], int(event.get("checks", 0)), ecs=ecs, cfg=cfg, is_halted=halted,
                             phase=event.get("phase", "all"))
    elif action == "rollback":
        result = steps.rollback(event["plan"], ecs=ecs, cfg=cfg)
    elif action == "finish":
        result = steps.finish(event["version"], event["execution"], ssm=ssm, cfg=cfg, autoscaling=_client("application-autoscaling"))
    elif action == "release":
        result = {"released": steps.release(ssm, cfg, event["execution"], _client("application-autoscaling"))}
    else:
        raise InvalidInput(f"unknown action {action!r}")
    logger.info("upgrade step", extra={"action": action, "result": json.dumps(result, default=str)[:2000]})
    return result

"""Upgrade Lambda (statemachines/upgrade.asl.json): thin handler over tootstack.upgrade.steps.

{"action": "prepare", "input": {"version": "v4.5.3"}, "execution": "<execution name>"} and then
"mirror", "register", "deploy", "check", "rollback", "finish", "release" with the state the machine
carries (names, ARNs, digests; never a secret). Each step's event is a model in tootstack.upgrade.events,
parsed once here.
"""

import json
import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.crashloop import is_halted
from tootstack.clients import ClientCache
from tootstack.upgrade import events, steps

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
        deployed_image=os.environ.get("DEPLOYED_IMAGE", ""),
        deployed_streaming_image=os.environ.get("DEPLOYED_STREAMING_IMAGE", ""),
        bridge_service=os.environ.get("BRIDGE_SERVICE", ""),
        task_families=[f for f in os.environ.get("TASK_FAMILIES", "").split(",") if f],
    )


def _mirror_credentials() -> dict:
    """Source: each registry host gets only its own credentials from the secret MIRROR_CREDENTIALS_SECRET_ARN
    (the mirror's MirrorSourceCredentialsSecretArn shapes, tootstack.mirror.auth.parse_source_credentials),
    anonymous otherwise; destination: the account's ECR registry, its token and scheme as ECR names them."""
    from tootstack.mirror.auth import parse_source_credentials
    from tootstack.mirror.service import ecr_endpoint

    secret_id = os.environ.get("MIRROR_CREDENTIALS_SECRET_ARN")
    keyed = parse_source_credentials(parameters.get_secret(secret_id, transform="json", max_age=60) if secret_id else {})
    _, dest_creds, plain_http = ecr_endpoint(_client("ecr"))
    return {"keyed_src_creds": keyed, "dest_creds": dest_creds, "plain_http": plain_http}


def _mirror_image(source: str, destination: str, keyed_src_creds: dict, **kwargs):
    """mirror_image with the source registry's own credentials only."""
    from tootstack.mirror import mirror_image
    from tootstack.mirror.auth import credentials_for
    from tootstack.mirror.refs import parse_ref

    return mirror_image(source, destination, src_creds=credentials_for(parse_ref(source).registry, keyed_src_creds), **kwargs)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    step = events.parse_step(event)   # InvalidInput naming the field, before anything is read or changed
    cfg = _config()
    ecs, ssm = _client("ecs"), _client("ssm")
    halted = lambda name: is_halted(name, cluster=cfg.cluster, ecs=ecs)  # noqa: E731 - a one-line closure over this request's cluster and client
    match step:
        case events.Prepare():
            result = steps.prepare(step.input, step.execution, ecs=ecs, ssm=ssm, cfg=cfg, is_halted=halted,
                                   sfn=_client("stepfunctions"), execution_arn=step.execution_arn,
                                   autoscaling=_client("application-autoscaling"))
            result["poll_seconds"] = steps.GUARD_POLL_SECONDS
        case events.Mirror():
            tracer.patch(tracing.REGISTRY_CLIENT)   # the registry client's calls, traced from this step on
            result = steps.mirror(step.version, cfg, _mirror_image, **_mirror_credentials())
        case events.Register():
            result = steps.register(step.version, dict(step.pinned), ecs=ecs, cfg=cfg)
        case events.Deploy():
            result = steps.deploy(step.plan.as_dict(), ecs=ecs, cfg=cfg, ssm=ssm,
                                  autoscaling=_client("application-autoscaling"), execution=step.execution)
        case events.Check():
            result = steps.check(step.plan.as_dict(), step.checks, ecs=ecs, cfg=cfg, is_halted=halted, phase=step.phase)
        case events.Rollback():
            result = steps.rollback(step.plan.as_dict(), ecs=ecs, cfg=cfg)
        case events.Finish():
            result = steps.finish(step.version, step.execution, ssm=ssm, cfg=cfg, autoscaling=_client("application-autoscaling"))
        case events.Release():
            result = {"released": steps.release(ssm, cfg, step.execution, _client("application-autoscaling"))}
    logger.info("upgrade step", extra={"action": step.action, "result": json.dumps(result, default=str)[:2000]})
    return result

"""Mirror Lambda: copy the stack's images (Docker Hub / ghcr.io) into its ECR repositories, pinned by digest.

Invoked on deploy (custom resource Custom::ImageMirror: the task definitions take the digests it
returns), daily by EventBridge Scheduler and on demand from the console with {"images": [...]}.
Copies are resumable: a run cut short is finished by the next one without re-copying what landed.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.cfn_custom import parse_request, respond
from tootstack.clients import ClientCache
from tootstack.errors import InvalidInput, TootstackError
from tootstack.mirror.auth import parse_source_credentials
from tootstack.mirror.service import ecr_endpoint, parse_jobs, repositories_from_env, run_jobs

logger = Logger()
tracer = Tracer(patch_modules=tracing.REGISTRY)  # only the clients this handler calls
metrics = Metrics()
_client = ClientCache()  # one boto3 client per service, reused by warm invocations
SAFETY_MS = 30_000   # answer CloudFormation this long before the Lambda timeout


def _source_credentials() -> dict[str, tuple[str, str]]:
    """Source registry credentials keyed by registry host, from the secret SOURCE_CREDENTIALS_SECRET_ARN when
    configured (kept for warm invocations): {"auths": {"ghcr.io": {"username", "password"}}} or
    {"username", "password"[, "registry"]} (Docker Hub unless "registry" names another host)."""
    secret_arn = os.environ.get("SOURCE_CREDENTIALS_SECRET_ARN")
    if not secret_arn:
        return {}
    return parse_source_credentials(parameters.get_secret(secret_arn, transform="json", max_age=300))


def _mirror(entries) -> list[dict]:
    jobs = parse_jobs(entries, repositories_from_env())
    registry, dest_creds, plain_http = ecr_endpoint(_client("ecr"))   # the account's registry, as ECR names it
    results = run_jobs(jobs, registry, dest_creds, _client("ssm"), os.environ["PARAMETER_PREFIX"],
                       src_creds=_source_credentials(), plain_http=plain_http)
    for r in results:
        metrics.add_metric(name="MirrorBytesCopied", unit=MetricUnit.Bytes, value=r["bytes_copied"])
        metrics.add_metric(name="MirrorSourceGets", unit=MetricUnit.Count, value=r["source_requests"]["GET"])
        logger.info("image mirrored", extra={k: r[k] for k in ("source", "image", "warm", "blobs_copied", "blobs_skipped")})
    return results


def _respond(event: dict, status: str, reason: str, data: dict | None = None) -> None:
    # Image references are public: not masked (NoEcho) in CloudFormation's console and events.
    respond(event, None, status, data, reason, no_echo=False,
            physical_id=event.get("PhysicalResourceId") or f"{event.get('LogicalResourceId') or 'ImageMirror'}-image-mirror")


def _custom_resource(event: dict, context: LambdaContext) -> dict:
    """Custom::ImageMirror: always answered (FAILED naming what is wrong with the request)."""
    from tootstack.mirror.events import ImageMirrorProperties   # pydantic on first use: the cold import stays in budget

    try:
        request = parse_request(event, ImageMirrorProperties)
    except InvalidInput as exc:
        _respond(event, "FAILED", str(exc))
        return {"status": "FAILED"}
    if request.properties is None:   # Delete
        # Repositories and parameters are kept with the images (they may still be referenced): nothing to undo.
        _respond(event, "SUCCESS", "nothing to delete")
        return {"status": "SUCCESS"}
    budget = max(context.get_remaining_time_in_millis() - SAFETY_MS, 1000) / 1000 if context else 840
    pool = ThreadPoolExecutor(1)
    future = pool.submit(_mirror, request.properties.Images)
    try:
        results = future.result(timeout=budget)
    except FutureTimeout:
        _respond(event, "FAILED", "mirror did not finish in time; retry the deployment: copies resume where they stopped")
        pool.shutdown(wait=False)
        return {"status": "FAILED"}
    except TootstackError as exc:
        _respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
        return {"status": "FAILED"}
    except Exception as exc:  # CloudFormation must always get an answer
        logger.exception("mirror failed")
        _respond(event, "FAILED", f"{type(exc).__name__}")
        return {"status": "FAILED"}
    pool.shutdown(wait=False)
    data = {r["name"] or r["repository"]: r["image"] for r in results}
    _respond(event, "SUCCESS", "mirrored", data)
    return {"status": "SUCCESS", "Data": data}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    if not isinstance(event, dict):
        raise InvalidInput('event must be an object {"images": [...]}')
    if "RequestType" in event and "ResponseURL" in event:
        return _custom_resource(event, context)
    if "images" not in event:
        raise InvalidInput('event needs "images": a list of image references, e.g. ["ghcr.io/mastodon/mastodon:v4.7.4"]')
    from tootstack.mirror.events import parse_mirror_request   # pydantic on first use: the cold import stays in budget

    return {"images": _mirror(parse_mirror_request(event).images)}

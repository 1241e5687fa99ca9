"""Sidekiq queue latency publisher (EventBridge Scheduler, every minute; OUTSIDE the VPC).

The VPC has no NAT and no interface endpoints, so the work is split as for the Redis rotation:
this function reads the Redis credential from RedisSecret (AWSCURRENT), hands it to the in-VPC
RedisProbeFunction (synchronous invoke, {"action": "sidekiq_queue_latency", ...}) which reads each
queue's latency from Redis (tootstack.autoscale.queue_latency, Sidekiq's layout), then publishes one
CloudWatch metric per Sidekiq service, `tootstack/SidekiqQueueLatency` {StackName, Service}, with
PutMetricData. The services' target tracking policies follow it. Per-queue figures go to the log only
(custom metrics are billed per metric).

Env: REDIS_SECRET_ARN (JSON username/password), REDIS_PROBE_FUNCTION (name/ARN of the in-VPC probe),
SERVICE_QUEUES ("default=default,push,ingress,mailers,fasp;pull=pull"), STACK_NAME,
POWERTOOLS_METRICS_NAMESPACE.
"""

import os

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack import tracing
from tootstack.scheduled import require_object
from tootstack.autoscale.queue_latency import (
    latencies_through_probe,
    parse_service_queues,
    publish,
    service_latencies,
)
from tootstack.errors import InvalidInput
from tootstack.redis_auth.credentials import AuthenticationFailed
from tootstack.clients import ClientCache
from tootstack.redis_auth.credentials import Credential

logger = Logger()
tracer = Tracer(patch_modules=tracing.AWS)  # only the clients this handler calls

_client = ClientCache()  # one boto3 client per service, reused by warm invocations


def _credential(force_fetch: bool = False) -> Credential:
    secret = parameters.get_secret(os.environ["REDIS_SECRET_ARN"], transform="json", max_age=300, force_fetch=force_fetch)
    return Credential.from_document(secret if isinstance(secret, dict) else {}, "RedisSecret")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    require_object(event, "queue latency invocation")   # reads nothing from its event: any JSON object (InvalidInput otherwise)
    mapping = parse_service_queues(os.environ.get("SERVICE_QUEUES", ""))
    function = os.environ.get("REDIS_PROBE_FUNCTION")
    if not function:
        raise InvalidInput("REDIS_PROBE_FUNCTION is not set")
    queues = sorted(set(q for qs in mapping.values() for q in qs))
    lambda_client = _client("lambda")
    try:
        latencies = latencies_through_probe(lambda_client, function, _credential(), queues)
    except AuthenticationFailed:
        # the cached password may have been retired by a rotation since: read AWSCURRENT again, once
        latencies = latencies_through_probe(lambda_client, function, _credential(force_fetch=True), queues)
    per_service = service_latencies(latencies, mapping)
    publish(_client("cloudwatch"), per_service, os.environ.get("STACK_NAME", "tootstack"),
            namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "tootstack"))
    logger.info("sidekiq queue latency", extra={"queues": latencies, "services": per_service})
    return {"queues": latencies, "services": per_service}

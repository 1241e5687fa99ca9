"""Sidekiq queue latency publisher (EventBridge Scheduler, every minute; VPC Lambda next to Redis).

Reads each queue's latency from Redis (tootstack.autoscale.queue_latency, Sidekiq's layout) and emits one
CloudWatch metric per Sidekiq service, `tootstack/SidekiqQueueLatency` {StackName, Service}, as embedded
metric format in its log (no CloudWatch API call from inside the VPC). The services' target tracking
policies follow it. Per-queue figures go to the log only (custom metrics are billed per metric).

Env: REDIS_HOST, REDIS_PORT, REDIS_SECRET_ARN (JSON username/password), SERVICE_QUEUES
("default=default,push,ingress,mailers,fasp;pull=pull"), optional REDIS_CA_FILE (local runs only).
"""

import os
import time

from aws_lambda_powertools import Logger, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from tootstack.autoscale.queue_latency import (
    known_queues,
    parse_service_queues,
    queue_latencies,
    service_latencies,
)
from tootstack.errors import DependencyUnavailable

logger = Logger()
tracer = Tracer()
METRIC = "SidekiqQueueLatency"


def _redis():
    import redis

    secret = parameters.get_secret(os.environ["REDIS_SECRET_ARN"], transform="json", max_age=300)
    kwargs = {
        "host": os.environ["REDIS_HOST"],
        "port": int(os.environ.get("REDIS_PORT", "6379")),
        "username": secret.get("username") or None,
        "password": secret.get("password") or None,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
        "ssl": os.environ.get("REDIS_TLS", "true") != "false",
    }
    if kwargs["ssl"]:
        kwargs["ssl_cert_reqs"] = "required"
        if os.environ.get("REDIS_CA_FILE"):
            kwargs["ssl_ca_certs"] = os.environ["REDIS_CA_FILE"]
    return redis.Redis(**kwargs)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict, context: LambdaContext) -> dict:
    import redis

    mapping = parse_service_queues(os.environ.get("SERVICE_QUEUES", ""))
    client = _redis()
    try:
        queues = set(q for qs in mapping.values() for q in qs) | known_queues(client)
        latencies = queue_latencies(client, sorted(queues), now=time.time())
    except redis.RedisError as exc:  # the message names the error class only: never a credential
        raise DependencyUnavailable(f"reading Sidekiq queues from Redis failed: {type(exc).__name__}") from None
    finally:
        client.close()
    per_service = service_latencies(latencies, mapping)
    stack = os.environ.get("STACK_NAME", "tootstack")
    for service, seconds in per_service.items():
        with single_metric(name=METRIC, unit=MetricUnit.Seconds, value=seconds,
                           namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "tootstack")) as metric:
            metric.add_dimension(name="StackName", value=stack)
            metric.add_dimension(name="Service", value=service)
    logger.info("sidekiq queue latency", extra={"queues": latencies, "services": per_service})
    return {"queues": latencies, "services": per_service}

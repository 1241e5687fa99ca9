"""Sidekiq queue latency, read from Redis the way Sidekiq's own API computes it.

Sidekiq's data layout: the set `queues` names every queue; `queue:<name>` is a list of JSON jobs,
pushed with LPUSH and fetched from the right (BRPOP), so the oldest job is the last element. A job has
`enqueued_at` (epoch seconds as a float up to Sidekiq 7, epoch milliseconds as an integer from Sidekiq 8).
Latency of a queue = now - enqueued_at of its oldest job (0 when empty), as `Sidekiq::Queue#latency`.

A service's latency is the largest latency of the queues it processes: that is the metric its target
tracking policy follows (a service that falls behind on any of its queues needs more workers).

Split across two Lambda functions, as the Redis rotation is (the VPC has no NAT and no interface endpoints):
- QueueLatencyFunction (outside the VPC): reads RedisSecret, calls `latencies_through_probe` (synchronous
  invoke of the in-VPC RedisProbeFunction with {"action": "sidekiq_queue_latency", "credential", "queues"})
  and `publish`es the metrics with PutMetricData.
- RedisProbeFunction (in the VPC): `probe_queue_latency` reads the queues with the credential it was handed,
  against the Redis endpoint of its own environment (an invoker cannot point the credential elsewhere).
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any, Iterable

from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError
from tootstack.redis_auth.credentials import invoke_probe

SIDEKIQ_8_MS_THRESHOLD = 1e11   # an epoch in seconds stays below this until the year 5138
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
ACTION = "sidekiq_queue_latency"
METRIC = "SidekiqQueueLatency"
MAX_QUEUES = 100                # per invocation (requested + discovered): bounds the probe's answer


def _enqueued_at_seconds(job: dict[str, Any]) -> float | None:
    value = job.get("enqueued_at", job.get("created_at"))
    if value is None or isinstance(value, bool):
        return None
    try:
        stamp = float(value)
    except (TypeError, ValueError):
        return None
    return stamp / 1000.0 if stamp > SIDEKIQ_8_MS_THRESHOLD else stamp


def queue_latencies(client: Any, queues: Iterable[str], now: float) -> dict[str, float]:
    """Latency in seconds of each queue (oldest job's age), in one round trip."""
    names = list(dict.fromkeys(queues))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.lrange(f"queue:{name}", -1, -1)
    result: dict[str, float] = {}
    for name, entries in zip(names, pipe.execute()):
        latency = 0.0
        if entries:
            raw = entries[0].decode() if isinstance(entries[0], bytes) else entries[0]
            try:
                job = json.loads(raw)
            except ValueError:
                job = {}
            stamp = _enqueued_at_seconds(job) if isinstance(job, dict) else None
            if stamp is not None:
                latency = max(0.0, now - stamp)
        result[name] = round(latency, 3)
    return result


def known_queues(client: Any) -> set[str]:
    members = client.smembers("queues")
    return {m.decode() if isinstance(m, bytes) else m for m in members}


def parse_service_queues(text: str) -> dict[str, list[str]]:
    """"default=default,push,ingress,mailers,fasp;pull=pull" -> {"default": [...], "pull": ["pull"]}."""
    mapping: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        service, sep, queues = part.partition("=")
        names = [q.strip() for q in queues.split(",") if q.strip()]
        if not sep or not service.strip() or not names or not all(QUEUE_NAME.fullmatch(q) for q in names):
            raise InvalidInput(f"bad service queue mapping {part!r}: expected service=queue[,queue...]")
        mapping[service.strip()] = names
    if not mapping:
        raise InvalidInput("no service queue mapping given (SERVICE_QUEUES)")
    return mapping


def service_latencies(latencies: dict[str, float], mapping: dict[str, list[str]]) -> dict[str, float]:
    return {service: max((latencies.get(q, 0.0) for q in queues), default=0.0) for service, queues in mapping.items()}


def read_latencies(client: Any, queues: Iterable[str], now: float) -> dict[str, float]:
    """Latency of the requested queues plus every queue Sidekiq knows (`queues` set), at most MAX_QUEUES."""
    names = list(dict.fromkeys(queues))
    extra = sorted(q for q in known_queues(client) if q not in names and QUEUE_NAME.fullmatch(q))
    return queue_latencies(client, (names + extra)[:MAX_QUEUES], now=now)


def _queue_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_QUEUES \
            or not all(isinstance(q, str) and QUEUE_NAME.fullmatch(q) for q in value):
        raise InvalidInput(f"'queues' must be a list of 1-{MAX_QUEUES} Sidekiq queue names ([A-Za-z0-9_.:-])")
    return value


def probe_queue_latency(event: dict[str, Any], endpoint: Any, now: float | None = None) -> dict[str, Any]:
    """The in-VPC side: {"action": ACTION, "credential": {"username", "password"}, "queues": [...]} ->
    {"ok": True, "queues": {name: seconds}} or {"ok": False, "error": <class name>, "message": ...}.
    Messages name the user, the endpoint and the error class only: never the password."""
    import redis

    from tootstack.redis_auth.credentials import Credential

    try:
        if not isinstance(event, dict):
            raise InvalidInput("event must be a JSON object")
        credential = Credential.from_document(event.get("credential") if isinstance(event.get("credential"), dict) else {},
                                              "'credential'")
        queues = _queue_list(event.get("queues"))
        client = endpoint.client(credential)
        try:
            latencies = read_latencies(client, queues, now=time.time() if now is None else now)
        finally:
            client.close()
    except redis.RedisError as exc:
        name = type(exc).__name__
        # the probe's one name for "Redis refused the credential", whatever the action
        return {"ok": False, "error": "AuthenticationFailed" if isinstance(exc, redis.AuthenticationError) else name,
                "message": f"reading Sidekiq queues at {endpoint} as user {credential.username} failed: {name}"}
    except TootstackError as exc:
        return {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    return {"ok": True, "queues": latencies}


def latencies_through_probe(lambda_client: Any, function: str, credential: Any, queues: list[str]) -> dict[str, float]:
    """The outside-VPC side: synchronous invoke of the probe; its payload holds the password (never logged)."""
    payload = {"action": ACTION, "credential": {"username": credential.username, "password": credential.password},
               "queues": list(queues)}
    body = invoke_probe(lambda_client, function, payload, "reading Sidekiq queues")   # AuthenticationFailed: refused
    queues_out = body.get("queues")
    if not isinstance(queues_out, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in queues_out.values()):
        raise DependencyUnavailable(f"queue latency probe {function} answered without queue latencies")
    return {str(k): float(v) for k, v in queues_out.items()}


def publish(cloudwatch: Any, per_service: dict[str, float], stack: str, namespace: str = "tootstack",
            timestamp: datetime | None = None) -> None:
    """One PutMetricData call: METRIC {StackName, Service} per service (what the scaling policies follow)."""
    if not per_service:
        return
    when = timestamp or datetime.now(timezone.utc)
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": METRIC, "Timestamp": when, "Value": float(seconds), "Unit": "Seconds",
         "Dimensions": [{"Name": "StackName", "Value": stack}, {"Name": "Service", "Value": service}]}
        for service, seconds in sorted(per_service.items())])

"""Sidekiq queue latency, read from Redis the way Sidekiq's own API computes it.

Sidekiq's data layout: the set `queues` names every queue; `queue:<name>` is a list of JSON jobs,
pushed with LPUSH and fetched from the right (BRPOP), so the oldest job is the last element. A job has
`enqueued_at` (epoch seconds as a float up to Sidekiq 7, epoch milliseconds as an integer from Sidekiq 8).
Latency of a queue = now - enqueued_at of its oldest job (0 when empty), as `Sidekiq::Queue#latency`.

A service's latency is the largest latency of the queues it processes: that is the metric its target
tracking policy follows (a service that falls behind on any of its queues needs more workers).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from tootstack.errors import InvalidInput

SIDEKIQ_8_MS_THRESHOLD = 1e11   # an epoch in seconds stays below this until the year 5138
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def _enqueued_at_seconds(job: dict[str, Any]) -> float | None:
    value = job.get("enqueued_at", job.get("created_at"))
    if value is None or isinstance(value, bool):
        return None
    try:
        stamp = float(value)
    except (TypeError, ValueError):
        return None
    return stamp / 1000.0 if stamp > SIDEKIQ_8_MS_THRESHOLD else stamp


def queue_latencies(client: Any, queues: Iterable[str], now: float, prefix: str = "") -> dict[str, float]:
    """Latency in seconds of each queue (oldest job's age), in one round trip."""
    names = list(dict.fromkeys(queues))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.lrange(f"{prefix}queue:{name}", -1, -1)
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


def known_queues(client: Any, prefix: str = "") -> set[str]:
    members = client.smembers(f"{prefix}queues")
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

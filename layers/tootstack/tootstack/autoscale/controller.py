"""The Spot fallback controller's AWS side: observe, decide (spot_fallback.decide), apply.

Observation: both services' desired/running counts (ECS DescribeServices), the last Spot interruption
(stopped tasks of the Spot service with stopCode SpotInterruption) or placement failure (service events
"unable to place"), the Spot service's queue latency (CloudWatch, the publisher's metric), and the
crashloop halt marker of either service. The state lives in an SSM parameter (JSON, no secret).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from tootstack.autoscale.spot_fallback import Decision, FallbackConfig, Observation, State, decide
from tootstack.errors import DependencyUnavailable, InvalidInput

PLACEMENT_FAILURE = "unable to place"


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def last_spot_trouble(ecs: Any, cluster: str, service: dict[str, Any]) -> float | None:
    stamps: list[float] = []
    for event in service.get("events", [])[:50]:
        if PLACEMENT_FAILURE in event.get("message", ""):
            stamps.append(_ts(event.get("createdAt")) or 0.0)
    arns = ecs.list_tasks(cluster=cluster, serviceName=service["serviceName"], desiredStatus="STOPPED").get("taskArns", [])
    if arns:
        for task in ecs.describe_tasks(cluster=cluster, tasks=arns[:100]).get("tasks", []):
            if task.get("stopCode") == "SpotInterruption":
                stamps.append(_ts(task.get("stoppedAt")) or _ts(task.get("stoppingAt")) or 0.0)
    return max(stamps) if stamps else None


def latest_latency(cloudwatch: Any, stack: str, metric_service: str, now: float, namespace: str = "tootstack") -> float | None:
    # The window ends a minute ahead: the current minute's datapoint is the one that matters.
    end = datetime.fromtimestamp(now, timezone.utc) + timedelta(minutes=1)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="SidekiqQueueLatency",
        Dimensions=[{"Name": "StackName", "Value": stack}, {"Name": "Service", "Value": metric_service}],
        StartTime=end - timedelta(minutes=6), EndTime=end, Period=60, Statistics=["Maximum"],
    ).get("Datapoints", [])
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def read_state(ssm: Any, parameter: str) -> State:
    try:
        return State.from_dict(json.loads(ssm.get_parameter(Name=parameter)["Parameter"]["Value"]))
    except ssm.exceptions.ParameterNotFound:
        return State()
    except ValueError as exc:
        raise InvalidInput(f"fallback state {parameter} is not JSON: {exc}") from None


def run_once(
    *, ecs: Any, cloudwatch: Any, ssm: Any, cluster: str, spot_service: str, on_demand_service: str,
    stack: str, metric_service: str, state_parameter: str, is_halted: Callable[[str], bool],
    cfg: FallbackConfig = FallbackConfig(), now: float | None = None,
) -> Decision:
    now = time.time() if now is None else now
    found = {s["serviceName"]: s for s in ecs.describe_services(cluster=cluster, services=[spot_service, on_demand_service]).get("services", [])
             if s.get("status") == "ACTIVE"}
    missing = [n for n in (spot_service, on_demand_service) if n not in found]
    if missing:
        raise DependencyUnavailable(f"ECS service(s) not found in {cluster}: {', '.join(missing)}")
    spot, on_demand = found[spot_service], found[on_demand_service]
    observation = Observation(
        now=now,
        latency_s=latest_latency(cloudwatch, stack, metric_service, now),
        spot_desired=int(spot["desiredCount"]),
        spot_running=int(spot["runningCount"]),
        on_demand_desired=int(on_demand["desiredCount"]),
        last_spot_trouble_at=last_spot_trouble(ecs, cluster, spot),
        halted=is_halted(spot_service) or is_halted(on_demand_service),
    )
    state = read_state(ssm, state_parameter)
    decision = decide(observation, state, cfg)
    if decision.changes and decision.on_demand_desired != observation.on_demand_desired:
        ecs.update_service(cluster=cluster, service=on_demand_service, desiredCount=decision.on_demand_desired)
    if decision.state != state:
        ssm.put_parameter(Name=state_parameter, Value=json.dumps(decision.state.as_dict()), Type="String", Overwrite=True)
    return decision

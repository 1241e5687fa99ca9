"""The crashloop detector: ECS events in, at most one halt decision per event out. Pure: all state goes
through a Store, nothing here calls ECS (see actions.py for what a decision does).

Rule: halt a service when `threshold` crashes (classify.CRASH_KINDS) of the same task definition fall
within `window_seconds` of each other, judged on the tasks' own stoppedAt times. The test looks at the
whole set of stored crashes, so the outcome does not depend on delivery order, and crashes are keyed
by task ARN, so duplicates change nothing.

Decision:
  rollback       a stable task definition is known (recorded when a deployment COMPLETED) and it is
                 not the one crashing: UpdateService back to it. If the ECS circuit breaker is already
                 rolling back (deployment FAILED, or IN_PROGRESS with a rollback reason), let it act:
                 `via` is "circuit_breaker" and no UpdateService is made.
  scale_to_zero  steady state (the crashing task definition is the stable one), nothing stable to go
                 back to, or the rolled-back-to definition crashes as well (escalation).
After a halt the service is marked halted until an operator resumes it.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tootstack.crashloop.classify import Stop, classify
from tootstack.crashloop.keys import cluster_name, parse_service_arn, service_key
from tootstack.crashloop.models import EcsDeploymentStateChangeEvent, EcsEvent, EcsTaskStateChangeEvent, parse_event
from tootstack.crashloop.store import Crash, Deployment, MemoryStore, Store

CRASH_TTL_GRACE_SECONDS = 24 * 3600

# (cluster, service, deployment id) -> task definition ARN, or None when it cannot be known
DeploymentResolver = Callable[[str, str, str], "str | None"]


@dataclass(frozen=True)
class DetectorConfig:
    threshold: int = 3
    window_seconds: float = 600.0
    cluster: str | None = None        # only events of this cluster (name or ARN); None: every cluster

    def __post_init__(self) -> None:
        from tootstack.errors import InvalidInput

        if self.threshold < 1:
            raise InvalidInput(f"crash threshold must be at least 1, got {self.threshold}")
        if self.window_seconds <= 0:
            raise InvalidInput(f"crash window must be positive, got {self.window_seconds} s")


@dataclass
class Decision:
    service: str                       # "<cluster>/<service>"
    cluster: str
    service_name: str
    action: str                        # "rollback" | "scale_to_zero"
    reason: str
    task_definition: str               # the crashing one
    target_task_definition: str | None = None   # rollback target
    via: str = "ecs_api"               # "ecs_api" | "circuit_breaker" (nothing to call)
    crash_count: int = 0
    threshold: int = 0
    window_seconds: float = 0.0
    event_id: str = ""
    decided_at: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Decision":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def window_reached(times: list[float], threshold: int, window_seconds: float) -> tuple[bool, int]:
    """(reached, largest count within any window). Order-independent: a function of the set of times."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = bisect.bisect_right(ordered, start + window_seconds, lo=i)
        best = max(best, end - i)
    return best >= threshold, best


class Detector:
    def __init__(
        self,
        config: DetectorConfig | None = None,
        store: Store | None = None,
        resolve_deployment: DeploymentResolver | None = None,
    ) -> None:
        self.config = config or DetectorConfig()
        self.store: Store = store if store is not None else MemoryStore()
        self.resolve_deployment = resolve_deployment
        self._cluster = cluster_name(self.config.cluster) if self.config.cluster else None
        self.last_stop: Stop | None = None   # the classification of the last task event (for metrics/logs)

    # ------------------------------------------------------------------------------------------
    def process(self, raw: Any) -> Decision | None:
        """Feed one event (raw dict/JSON or a parsed model). Returns a Decision when the service must be
        halted now (or a halt was decided but not applied yet: it is returned again so a retry applies it)."""
        event: EcsEvent = raw if isinstance(raw, (EcsTaskStateChangeEvent, EcsDeploymentStateChangeEvent)) else parse_event(raw)
        self.last_stop = None
        if isinstance(event, EcsDeploymentStateChangeEvent):
            self._deployment(event)
            return None
        return self._task(event)

    def replay(self, raw: Any) -> Decision | None:
        """`process` with nothing to apply (the CLI replay, the benchmark, tests): a halt is marked
        applied at once, so it is decided once and not returned again by later events."""
        decision = self.process(raw)
        if decision is not None:
            self.store.update_halt(decision.service, {"applied": True})
        return decision

    # ------------------------------------------------------------------------------------------
    def _deployment(self, event: EcsDeploymentStateChangeEvent) -> None:
        cluster, service = parse_service_arn(event.service_arn, self._cluster)
        if self._cluster and cluster != self._cluster:
            return
        key = service_key(cluster, service)
        d = event.detail
        updated = d.updatedAt.timestamp()
        self.store.record_deployment(key, Deployment(d.deploymentId, d.eventName, d.reason or "", updated))
        if d.eventName != "SERVICE_DEPLOYMENT_COMPLETED":
            return
        state = self.store.get_service(key)
        task_definition = state.deployment_map.get(d.deploymentId)
        if task_definition is None and self.resolve_deployment is not None:
            task_definition = self.resolve_deployment(cluster, service, d.deploymentId)
            if task_definition:
                self.store.map_deployment(key, d.deploymentId, task_definition)
        if task_definition:
            self.store.set_stable(key, task_definition, updated)
        else:
            self.store.record_completed(key, d.deploymentId, updated)

    def _task(self, event: EcsTaskStateChangeEvent) -> Decision | None:
        task = event.detail
        service = task.service_name
        cluster = cluster_name(task.clusterArn)
        if self._cluster and cluster != self._cluster:
            return None
        if service is None:
            self.last_stop = classify(task)
            return None
        key = service_key(cluster, service)
        state = self.store.get_service(key)
        started_by = task.startedBy if task.startedBy and task.startedBy.startswith("ecs-svc/") else None
        if started_by and started_by not in state.deployment_map:
            self.store.map_deployment(key, started_by, task.taskDefinitionArn)
            if started_by in state.pending_completed:
                self.store.set_stable(key, task.taskDefinitionArn, state.pending_completed[started_by])
            state = self.store.get_service(key)

        if state.halt is not None and not state.halt.get("applied"):
            return Decision.from_dict(state.halt)   # decided earlier, actions not applied yet: retry them

        stop = classify(task, state.deployment.deployment_id if state.deployment else None)
        self.last_stop = stop
        if not stop.is_crash:
            return None
        stopped_at = (task.stoppedAt or event.time).timestamp()
        if stopped_at <= state.resumed_at:
            return None                                   # from before the operator resumed the service
        crash = Crash(task.taskArn, task.taskDefinitionArn, stopped_at, stop.kind, stop.reason, stop.exit_codes, event.id)
        self.store.add_crash(key, crash, stopped_at + self.config.window_seconds + CRASH_TTL_GRACE_SECONDS)
        crashes = [c for c in self.store.list_crashes(key, task.taskDefinitionArn) if c.stopped_at > state.resumed_at]
        reached, count = window_reached([c.stopped_at for c in crashes], self.config.threshold, self.config.window_seconds)
        if not reached:
            return None
        decision = self._decide(cluster, service, key, task.taskDefinitionArn, state, crashes, count)
        if decision is None:
            return None
        decision.event_id = event.id
        decision.decided_at = event.time.strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.store.put_halt(key, decision.as_dict()):
            return None                                   # someone else halted it first
        return decision

    def _decide(self, cluster, service, key, task_definition, state, crashes, count) -> Decision | None:
        cfg = self.config
        evidence = [c.as_evidence() for c in sorted(crashes, key=lambda c: (c.stopped_at, c.task_arn))][-max(cfg.threshold, 10):]
        base = dict(
            service=key, cluster=cluster, service_name=service, task_definition=task_definition,
            crash_count=count, threshold=cfg.threshold, window_seconds=cfg.window_seconds, evidence=evidence,
        )
        what = f"{count} crashes of {_short(task_definition)} within {int(cfg.window_seconds)} s (threshold {cfg.threshold})"
        halt = state.halt
        if halt is not None:
            if halt.get("action") == "rollback" and task_definition == halt.get("target_task_definition"):
                return Decision(action="scale_to_zero", reason=f"{what}; the rolled-back-to definition crashes too", **base)
            return None                                   # already halted
        deployment = state.deployment
        breaker = deployment is not None and (
            deployment.event_name == "SERVICE_DEPLOYMENT_FAILED"
            or (deployment.event_name == "SERVICE_DEPLOYMENT_IN_PROGRESS" and "rollback" in deployment.reason.lower())
        )
        stable = state.stable_task_definition
        if stable and stable != task_definition:
            if breaker:
                return Decision(
                    action="rollback", via="circuit_breaker", target_task_definition=stable,
                    reason=f"{what}; the deployment circuit breaker is already rolling back to {_short(stable)}", **base,
                )
            return Decision(
                action="rollback", target_task_definition=stable,
                reason=f"{what}; rolling back to the last stable {_short(stable)}", **base,
            )
        why = "it is the stable definition (steady state)" if stable else "no stable definition recorded to roll back to"
        return Decision(action="scale_to_zero", reason=f"{what}; {why}", **base)


def _short(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1]

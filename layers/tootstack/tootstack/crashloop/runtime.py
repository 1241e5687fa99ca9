"""Wiring for the detector Lambda: configuration from the environment, DynamoDB state, ECS/SNS actions.

Environment: CRASHLOOP_TABLE (required), CLUSTER_NAME (only this cluster's events count),
ALERT_TOPIC_ARN, CRASH_THRESHOLD (default 3), CRASH_WINDOW_MINUTES (default 10),
CRASH_ESCALATE_MINUTES (default 60, or the window if longer: a stable-revision crashloop still going this
long is alerted again), NUDGE_SCHEDULE_GROUP + NUDGE_SCHEDULER_ROLE_ARN (EventBridge Scheduler group and
the role it invokes this function with: nudges of a stable revision whose tasks fail to start; unset: none).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from tootstack.contracts import parse
from tootstack.crashloop.actions import Halter, NudgeScheduler, describe_service, resume
from tootstack.crashloop.clock import epoch, iso
from tootstack.crashloop.detector import Decision, Detector, DetectorConfig
from tootstack.crashloop.models import (
    EcsDeploymentStateChangeEvent,
    EcsEvent,
    EcsTaskStateChangeEvent,
    Nudge,
    Resume,
    parse_event,
)
from tootstack.crashloop.store import DynamoStore
from tootstack.errors import InvalidInput


def config_from_env(env: Mapping[str, str] | None = None) -> DetectorConfig:
    env = os.environ if env is None else env
    try:
        threshold = int(env.get("CRASH_THRESHOLD", "3"))
        window = float(env.get("CRASH_WINDOW_MINUTES", "10")) * 60
        escalate = float(env["CRASH_ESCALATE_MINUTES"]) * 60 if env.get("CRASH_ESCALATE_MINUTES") else None   # DetectorConfig's default
    except ValueError as exc:
        raise InvalidInput(f"CRASH_THRESHOLD / CRASH_WINDOW_MINUTES / CRASH_ESCALATE_MINUTES must be numbers: {exc}") from None
    # nudges need the schedule group and the scheduler's role: without them none can be scheduled, so no
    # chain is started and the alert does not announce one
    return DetectorConfig(threshold=threshold, window_seconds=window, cluster=env.get("CLUSTER_NAME") or None,
                          escalate_after_seconds=escalate,
                          nudge=bool(env.get("NUDGE_SCHEDULE_GROUP") and env.get("NUDGE_SCHEDULER_ROLE_ARN")))


def table_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    table = env.get("CRASHLOOP_TABLE")
    if not table:
        raise InvalidInput("CRASHLOOP_TABLE is not set")
    return table


def ecs_deployment_resolver(ecs: Any):
    """Task definition of a deployment, from DescribeServices (used when a deployment COMPLETED)."""

    def resolve(cluster: str, service: str, deployment_id: str) -> str | None:
        found = ecs.describe_services(cluster=cluster, services=[service]).get("services", [])
        for svc in found:
            for deployment in svc.get("deployments", []):
                if deployment.get("id") == deployment_id:
                    return deployment.get("taskDefinition")
        return None

    return resolve


class Runtime:
    """The detector, its DynamoDB state and the halt actions, configured from the environment (boto3
    clients find their region in it: Lambda sets AWS_REGION and AWS_DEFAULT_REGION)."""

    def __init__(self) -> None:
        import boto3

        self.ecs = boto3.client("ecs")
        self.store = DynamoStore(table_from_env(), boto3.client("dynamodb"))
        self.detector = Detector(config_from_env(), self.store, ecs_deployment_resolver(self.ecs))
        self.halter = Halter(self.store, ecs=self.ecs, topic_arn=os.environ.get("ALERT_TOPIC_ARN") or None)
        self._nudge_env = (os.environ.get("NUDGE_SCHEDULE_GROUP"), os.environ.get("NUDGE_SCHEDULER_ROLE_ARN"))

    def enable_nudges(self, target_arn: str | None, scheduler: Any = None) -> None:
        """Schedule nudges that invoke `target_arn` (the function's own ARN, from the Lambda context) when
        NUDGE_SCHEDULE_GROUP and NUDGE_SCHEDULER_ROLE_ARN are set; otherwise none are scheduled."""
        group, role = self._nudge_env
        if group and role and target_arn and self.halter.nudges is None:
            unqualified = ":".join(target_arn.split(":")[:7])   # arn:aws:lambda:region:account:function:name
            self.halter.nudges = NudgeScheduler(group, role, unqualified, scheduler)

    def handle_nudge(self, event: Nudge | dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """A scheduled nudge step (models.Nudge; a dict is parsed into one first)."""
        import time

        nudge = event if isinstance(event, Nudge) else parse(Nudge, event, "crashloop nudge")
        service, seq, episode = nudge.service, nudge.seq, iso(epoch(nudge.episode))
        cluster, name = service.split("/")
        state = self.store.get_service(service)
        td = (state.episode or {}).get("task_definition")
        running = False
        if td:
            found = describe_service(self.ecs, cluster, name)
            running = any(d.get("taskDefinition") == td and int(d.get("runningCount", 0)) > 0 for d in found.get("deployments", []))
        decision = self.detector.nudge(service, seq, episode, time.time() if now is None else now, running)
        if decision is None:
            return {"service": service, "seq": seq, "action": None}   # a duplicate, stale or stopped step
        applied = self.halter.apply_nudge(decision)
        return {"service": service, "seq": seq, "action": decision.action, "reason": decision.reason,
                "nudges": decision.nudges, **applied}

    def handle_ecs_event(self, event: EcsEvent | dict[str, Any]) -> dict[str, Any]:
        """An ECS event from EventBridge (models.parse_event's result; a dict is parsed first)."""
        event = event if isinstance(event, (EcsTaskStateChangeEvent, EcsDeploymentStateChangeEvent)) else parse_event(event)
        decision: Decision | None = self.detector.process(event)
        stop = self.detector.last_stop
        result: dict[str, Any] = {"event_id": event.id, "stop_kind": stop.kind if stop else None,
                                  "crash": bool(stop and stop.is_crash), "action": None}
        if decision is not None:
            applied = self.halter.apply(decision)
            result.update(
                action=decision.action,
                service=decision.service,
                reason=decision.reason,
                via=decision.via,
                target_task_definition=decision.target_task_definition,
                crash_count=decision.crash_count,
                alerts=decision.alerts,
                desired_count=applied.get("desired_count"),
                previous_desired_count=applied.get("previous_desired_count"),
                alert_message_id=applied.get("alert_message_id"),
                nudge_at=applied.get("nudge_at"),
            )
        return result

    def handle_resume(self, event: Resume | dict[str, Any]) -> dict[str, Any]:
        """The console un-halt (models.Resume; a dict is parsed first). resume() resolves the service and
        checks that it is halted before it changes anything."""
        request = event if isinstance(event, Resume) else parse(Resume, event, "crashloop resume")
        return resume(
            request.service,
            cluster=request.cluster,  # else $CLUSTER_NAME (resolve_service)
            desired_count=request.desired_count,
            store=self.store,
            ecs=self.ecs,
            autoscaling=self.halter.autoscaling,
        )

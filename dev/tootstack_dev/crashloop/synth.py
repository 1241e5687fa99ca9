"""Build ECS events with the shapes EventBridge delivers (for tests, the benchmark and the rehearsal).

`task_stopped(kind, ...)` makes an "ECS Task State Change" for each stop kind the classifier knows,
with the stopCode / stoppedReason / container exit codes ECS reports for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
EPOCH = datetime(2026, 11, 2, 9, 0, 0, tzinfo=timezone.utc)

STOPS: dict[str, dict[str, Any]] = {
    "exit_nonzero": {
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "exit": 1,
        "container_reason": None,
    },
    "oom": {
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "exit": 137,
        "container_reason": "OutOfMemoryError: Container killed due to memory usage",
    },
    "exit_zero": {
        "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited",
        "exit": 0,
        "container_reason": None,
    },
    "elb_health_check": {
        "stopCode": "ServiceSchedulerInitiated",
        "stoppedReason": "Task failed ELB health checks in (target-group arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef)",
        "exit": 143,
        "container_reason": None,
    },
    "container_health_check": {
        "stopCode": "ServiceSchedulerInitiated",
        "stoppedReason": "Task failed container health checks",
        "exit": 143,
        "container_reason": None,
    },
    "image_pull": {
        "stopCode": "TaskFailedToStart",
        "stoppedReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref docker.io/tootsuite/mastodon:v4.5.2: 429 Too Many Requests - toomanyrequests: You have reached your pull rate limit",
        "exit": None,
        "container_reason": "CannotPullContainerError: 429 Too Many Requests",
    },
    "secrets": {
        "stopCode": "TaskFailedToStart",
        "stoppedReason": "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: ResourceNotFoundException: Secrets Manager can't find the specified secret.",
        "exit": None,
        "container_reason": None,
    },
    "scale_in": {
        "stopCode": "ServiceSchedulerInitiated",
        "stoppedReason": "Scaling activity initiated by (deployment {deployment})",
        "exit": 143,
        "container_reason": None,
    },
    "deployment_replacement": {
        "stopCode": "ServiceSchedulerInitiated",
        "stoppedReason": "Scaling activity initiated by (deployment {new_deployment})",
        "exit": 143,
        "container_reason": None,
    },
    "spot_interruption": {
        "stopCode": "SpotInterruption",
        "stoppedReason": "Your Spot Task was interrupted.",
        "exit": 143,
        "container_reason": None,
        "capacity": "FARGATE_SPOT",
    },
    "termination_notice": {
        "stopCode": "TerminationNotice",
        "stoppedReason": "Task stopped due to a scheduled maintenance event",
        "exit": 143,
        "container_reason": None,
    },
    "user_initiated": {
        "stopCode": "UserInitiated",
        "stoppedReason": "Task stopped by user",
        "exit": 143,
        "container_reason": None,
    },
}
CRASHING_STOPS = ("exit_nonzero", "oom", "exit_zero", "elb_health_check", "container_health_check", "image_pull", "secrets")
BENIGN_STOPS = ("scale_in", "deployment_replacement", "spot_interruption", "termination_notice", "user_initiated")


def cluster_arn(cluster: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"


def service_arn(cluster: str, service: str) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{service}"


def task_definition_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"


def _ts(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def task_stopped(
    kind: str,
    *,
    cluster: str = "tootstack",
    service: str | None = "web",
    task_definition: str | None = None,
    at: datetime = EPOCH,
    deployment: str = "ecs-svc/1000000000000000001",
    new_deployment: str = "ecs-svc/1000000000000000002",
    container: str = "web",
    task_id: str | None = None,
    event_id: str | None = None,
    family: str | None = None,
) -> dict[str, Any]:
    spec = STOPS[kind]
    task_id = task_id or uuid.uuid4().hex
    task_definition = task_definition or task_definition_arn(service or family or "toolbox", 1)
    started = at - timedelta(seconds=45)
    container_entry: dict[str, Any] = {
        "containerArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:container/{cluster}/{task_id}/{uuid.uuid5(uuid.NAMESPACE_URL, task_id)}",
        "lastStatus": "STOPPED",
        "name": container,
        "image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mastodon@sha256:{'a' * 64}",
        "taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{task_id}",
        "networkInterfaces": [],
        "cpu": "0",
    }
    if spec["exit"] is not None:
        container_entry["exitCode"] = spec["exit"]
    if spec["container_reason"]:
        container_entry["reason"] = spec["container_reason"]
    detail: dict[str, Any] = {
        "attachments": [],
        "attributes": [{"name": "ecs.cpu-architecture", "value": "arm64"}],
        "availabilityZone": f"{REGION}a",
        "capacityProviderName": spec.get("capacity", "FARGATE"),
        "clusterArn": cluster_arn(cluster),
        "connectivity": "CONNECTED",
        "containers": [container_entry],
        "cpu": "512",
        "createdAt": _ts(started - timedelta(seconds=20)),
        "desiredStatus": "STOPPED",
        "enableExecuteCommand": False,
        "group": f"service:{service}" if service else f"family:{family or 'toolbox'}",
        "launchType": "FARGATE",
        "lastStatus": "STOPPED",
        "memory": "1024",
        "platformVersion": "1.4.0",
        "stopCode": spec["stopCode"],
        "stoppedAt": _ts(at),
        "stoppedReason": spec["stoppedReason"].format(deployment=deployment, new_deployment=new_deployment),
        "stoppingAt": _ts(at - timedelta(seconds=5)),
        "taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{task_id}",
        "taskDefinitionArn": task_definition,
        "updatedAt": _ts(at),
        "version": 5,
    }
    if spec["exit"] is not None or kind not in ("image_pull", "secrets"):
        detail["startedAt"] = _ts(started)
    if service:
        detail["startedBy"] = deployment
    else:
        detail["startedBy"] = "tootstack"
    return _envelope("ECS Task State Change", [detail["taskArn"]], detail, at, event_id)


def deployment_event(
    event_name: str,
    *,
    cluster: str = "tootstack",
    service: str = "web",
    deployment: str = "ecs-svc/1000000000000000002",
    at: datetime = EPOCH,
    reason: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    default_reason = {
        "SERVICE_DEPLOYMENT_IN_PROGRESS": "ECS deployment " + deployment + " in progress.",
        "SERVICE_DEPLOYMENT_COMPLETED": "ECS deployment " + deployment + " completed.",
        "SERVICE_DEPLOYMENT_FAILED": "ECS deployment circuit breaker: tasks failed to start.",
    }[event_name]
    detail = {
        "eventType": "ERROR" if event_name == "SERVICE_DEPLOYMENT_FAILED" else "INFO",
        "eventName": event_name,
        "deploymentId": deployment,
        "updatedAt": _ts(at),
        "reason": reason or default_reason,
    }
    return _envelope("ECS Deployment State Change", [service_arn(cluster, service)], detail, at, event_id)


def _envelope(detail_type: str, resources: list[str], detail: dict[str, Any], at: datetime, event_id: str | None) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.ecs",
        "account": ACCOUNT,
        "time": at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": resources,
        "detail": detail,
    }


# --- a dependency outage across the Mastodon services ----------------------------------------------
# How each service's tasks die while the database (or Redis) is unreachable: Puma (web, core) stops
# answering the ALB health check and is replaced; Sidekiq exits 1 while booting; streaming fails its
# container health check. The seconds are how long a replacement lives before it dies again.
OUTAGE_STOPS: dict[str, tuple[str, float]] = {
    "core": ("elb_health_check", 90.0),
    "web": ("elb_health_check", 90.0),
    "streaming": ("container_health_check", 60.0),
    "sidekiq-default": ("exit_nonzero", 30.0),
    "sidekiq-pull": ("exit_nonzero", 30.0),
}


def stable_revisions(services: Any = tuple(OUTAGE_STOPS), *, cluster: str = "tootstack", at: datetime = EPOCH) -> list[dict[str, Any]]:
    """Each service's first deployment (ecs-svc/1, task definition <service>:1) completed: its stable revision."""
    events: list[dict[str, Any]] = []
    for service in services:
        td = task_definition_arn(service, 1)
        events.append(task_stopped("user_initiated", cluster=cluster, service=service, task_definition=td, deployment="ecs-svc/1",
                                   at=at, container=service))
        events.append(deployment_event("SERVICE_DEPLOYMENT_COMPLETED", cluster=cluster, service=service, deployment="ecs-svc/1",
                                       at=at + timedelta(seconds=1)))
    return events


def dependency_outage(
    start: datetime,
    minutes: float,
    *,
    services: Any = tuple(OUTAGE_STOPS),
    tasks: int = 2,
    cluster: str = "tootstack",
    rng: Any = None,
    revision: int = 1,
    deployment: str = "ecs-svc/1",
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """The task stops of `tasks` tasks per service while a dependency is unreachable from `start` for
    `minutes` (sorted by stoppedAt). Each replacement dies after its kind's lifetime (jittered by `rng`, a
    random.Random, when given); nothing dies once the dependency is back. `kind` (e.g. "secrets": tasks that
    never start) replaces every service's own stop kind.
    Launches are evenly paced: ECS's back-off of tasks that never start is modelled by throttled_outage."""
    end = start + timedelta(minutes=minutes)
    events: list[dict[str, Any]] = []
    for service in services:
        own, life = OUTAGE_STOPS.get(service, ("exit_nonzero", 30.0))
        stop_kind = kind or own
        td = task_definition_arn(service, revision)
        for slot in range(tasks):
            at = start + timedelta(seconds=life * (0.3 + 0.7 * (rng.random() if rng else slot / max(1, tasks))))
            while at < end:
                events.append(task_stopped(stop_kind, cluster=cluster, service=service, task_definition=td, deployment=deployment,
                                           at=at, container=service))
                at += timedelta(seconds=life * (rng.uniform(0.8, 1.2) if rng else 1.0))
    events.sort(key=lambda e: e["detail"]["stoppedAt"])
    return events


def zero_task_seconds(decisions: Any, service: str, after: float, until: float) -> float:
    """Seconds in [after, until] during which `service` was held at zero tasks by the detector, given
    (epoch seconds, Decision) pairs: a scale_to_zero (earlier versions) holds it there until an operator
    resumes it, which never happens in a replay, so until `until`."""
    stops = [at for at, d in decisions if d.service_name == service and d.action == "scale_to_zero"]
    return max(0.0, until - max(min(stops), after)) if stops else 0.0


# --- ECS's service throttle logic for tasks that never reach RUNNING -------------------------------
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-throttle-logic.html: when a service's
# tasks go from PENDING to STOPPED without reaching RUNNING, the scheduler "incrementally increases the
# time between restart attempts ... up to a maximum of 27 minutes", retries indefinitely, has no settings,
# and "update the service to use a new task definition ... immediately returns the service to normal,
# non-throttled operation". The increments are not documented: modelled as doubling from `base` seconds.
THROTTLE_MAX_SECONDS = 27 * 60.0


def throttle_delay(failures: int, base: float = 60.0) -> float:
    """Seconds ECS waits before the next launch after `failures` consecutive failed starts (>= 1)."""
    return min(THROTTLE_MAX_SECONDS, base * 2 ** max(0, failures - 1))


def task_running(*, cluster: str = "tootstack", service: str = "core", task_definition: str | None = None,
                 at: datetime = EPOCH, deployment: str = "ecs-svc/1", task_id: str | None = None) -> dict[str, Any]:
    """An "ECS Task State Change" with lastStatus RUNNING (a task that started)."""
    event = task_stopped("user_initiated", cluster=cluster, service=service, task_definition=task_definition, at=at,
                         deployment=deployment, container=service, task_id=task_id)
    d = event["detail"]
    for k in ("stopCode", "stoppedReason", "stoppedAt", "stoppingAt"):
        d.pop(k, None)
    d.update(lastStatus="RUNNING", desiredStatus="RUNNING", startedAt=_ts(at))
    d["containers"][0].pop("exitCode", None)
    d["containers"][0]["lastStatus"] = "RUNNING"
    return event


def throttled_outage(detector: Any, start: datetime, minutes: float, *, service: str = "core", base: float = 60.0,
                     horizon_minutes: float = 24 * 60) -> dict[str, Any]:
    """One service on its stable revision (one task) while secrets/image/ENI are unreachable from `start`
    for `minutes`: each launch stops with TaskFailedToStart and ECS's throttle (throttle_delay) spaces the
    next; a `nudge` decision of the detector (run on this clock with run_due_nudges) forces a new deployment:
    its SERVICE_DEPLOYMENT_IN_PROGRESS event (fed to the detector), a launch at once, back-off reset. The first launch after the outage reaches RUNNING (fed to the detector).
    Returns {"back_at", "down_after_end" (seconds from the outage's end to a RUNNING task), "events", "decisions"}.
    `detector` must use an in-memory store and already know the service's stable revision."""
    td = task_definition_arn(service, 1)
    t0, end = start.timestamp(), start.timestamp() + minutes * 60
    events: list[dict[str, Any]] = []
    decisions: list[Any] = []
    launch, failures, n = t0, 0, 0
    deployment = "ecs-svc/1"

    def deploy(nudge: Any) -> str:
        """UpdateService(forceNewDeployment): ECS starts a deployment and announces it IN_PROGRESS."""
        nonlocal deployment
        deployment = f"ecs-svc/{2000000000000000000 + len(events)}"
        event = deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service=service, deployment=deployment,
                                 at=datetime.fromtimestamp(_epoch_of(nudge.decided_at), timezone.utc))
        events.append(event)
        detector.replay(event)
        return deployment

    while launch < t0 + horizon_minutes * 60:
        fired = detector.run_due_nudges(launch, deploy=deploy) if hasattr(detector, "run_due_nudges") else []   # a detector that never nudges
        decisions += fired
        forced = [d for d in fired if d.action == "nudge"]
        if forced:
            launch, failures = _epoch_of(forced[0].decided_at), 0   # a new deployment launches at once
        n += 1
        at = datetime.fromtimestamp(launch, timezone.utc)
        if launch >= end:
            event = task_running(service=service, task_definition=td, at=at + timedelta(seconds=30), task_id=f"run{n:029x}",
                                 deployment=deployment)
            events.append(event)
            decision = detector.replay(event)
            if decision is not None:
                decisions.append(decision)
            return {"back_at": launch, "down_after_end": launch - end, "events": events, "decisions": decisions}
        event = task_stopped("secrets", service=service, task_definition=td, deployment=deployment, at=at + timedelta(seconds=20),
                             container=service, task_id=f"fail{n:028x}")
        events.append(event)
        decision = detector.replay(event)
        if decision is not None:
            decisions.append(decision)
        failures += 1
        launch += throttle_delay(failures, base)
    raise ValueError("the service never came back within the horizon")


def _epoch_of(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()

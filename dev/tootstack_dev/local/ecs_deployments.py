"""ECS service deployments as ECS reports them, on top of moto (which keeps the first deployment forever).

After UpdateService with a new task definition (or forceNewDeployment), ECS shows a new PRIMARY
deployment for it and, once it completes, runs the desired count. LocalAws installs this for every
emulation; `outcome(service_name, task_definition)` (LocalAws.ecs_outcome) decides how a rollout ends:
"COMPLETED" (steady state) or "FAILED" (the deployment circuit breaker tripped: with rollback on, ECS puts
the service back on the previous task definition, the FAILED deployment is what the history shows).
What reads it: the upgrade's guard, and the Redis rotation, which redeploys running services before it
retires the old password.
"""

from __future__ import annotations

from typing import Any, Callable

from moto.core.utils import utcnow
from moto.ecs.models import EC2ContainerServiceBackend
from moto.moto_api._internal import mock_random

Outcome = Callable[[str, str], str]


def deploying_update_service(original: Callable[..., Any], outcome: Callable[[], Outcome],
                             observe: Callable[[dict[str, Any]], None] | None = None) -> Callable[..., Any]:
    """A replacement for EC2ContainerServiceBackend.update_service; `outcome()` gives the current decider;
    `observe` gets each applied update with the cluster's running counts right after it."""

    def update_service(backend: EC2ContainerServiceBackend, service_properties: dict) -> object:
        props = dict(service_properties)
        name = str(props.get("service", "")).split("/")[-1]
        before = backend._get_service(props.get("cluster", "default"), name)
        previous = before.task_definition
        service = original(backend, service_properties)
        new_td = service.task_definition
        if new_td != previous or not service.deployments or props.get("force_new_deployment"):
            state = outcome()(service.name, new_td)
            now = utcnow()
            deployment = {
                "id": f"ecs-svc/{mock_random.randint(0, 32**12)}", "status": "PRIMARY", "taskDefinition": new_td,
                "desiredCount": service.desired_count, "pendingCount": 0,
                "runningCount": service.desired_count if state == "COMPLETED" else 0,
                "failedTasks": 0 if state == "COMPLETED" else 3, "createdAt": now, "updatedAt": now,
                "launchType": "FARGATE", "rolloutState": state,
                "rolloutStateReason": ("ECS deployment completed." if state == "COMPLETED" else
                                       "ECS deployment circuit breaker: tasks failed to start."),
            }
            if state == "FAILED":
                service.task_definition = previous   # rollback to the last completed deployment
            else:                                    # a completed rollout runs its desired count
                service.running_count, service.pending_count = service.desired_count, 0
            service.deployments = [deployment]
        if observe is not None:
            cluster = service.cluster_name
            observe({"service": service.name, "desired": service.desired_count, "task_definition": service.task_definition,
                     "previous": previous,
                     "running": {s.name: s.running_count for s in backend.services.values() if s.cluster_name == cluster}})
        return service

    return update_service

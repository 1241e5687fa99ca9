"""Classify one stopped ECS task: is it a crash of the service, or an ordinary stop?

Crashes (count towards a halt):
  exit_nonzero     an essential container exited with a non-zero code (or was OOM-killed)
  exit_zero        a *service* task's essential container exited 0 on its own (a service process is
                   meant to run forever; exit 0 in a loop still restarts and re-pulls the image)
  health_check     the scheduler replaced the task after failing ELB or container health checks
  failed_to_start  TaskFailedToStart: image pull, secrets retrieval, resources, ENI...
Not crashes (never halt):
  scale_in, deployment_replacement, spot_interruption, termination_notice, user_initiated,
  infrastructure, scheduler_other, one_off (RunTask tasks, whatever their exit code: a one-off job is
  not a service and must never halt one), not_stopped (RUNNING/PENDING/... status changes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tootstack.crashloop.models import EcsTaskDetail

CRASH_KINDS = frozenset({"exit_nonzero", "exit_zero", "health_check", "failed_to_start"})

_HEALTH = re.compile(r"health ?checks?", re.IGNORECASE)
_SCALING = re.compile(r"scaling activity initiated by", re.IGNORECASE)
_DEPLOYMENT_IN_REASON = re.compile(r"\(deployment (ecs-svc/\d+)\)")
_OOM = re.compile(r"OutOfMemory|out of memory|OOM", re.IGNORECASE)


@dataclass(frozen=True)
class Stop:
    kind: str
    reason: str                  # stoppedReason (or the container reason that explains it)
    exit_codes: dict[str, int | None]

    @property
    def is_crash(self) -> bool:
        return self.kind in CRASH_KINDS


def classify(task: EcsTaskDetail, active_deployment: str | None = None) -> Stop:
    """What kind of stop this task event is. `active_deployment` is the service's newest deployment id
    when known: a scheduler stop of a task from an older deployment is a deployment replacement."""
    exit_codes = {c.name: c.exitCode for c in task.containers}
    reason = task.stoppedReason or ""
    if task.lastStatus != "STOPPED":
        return Stop("not_stopped", reason, exit_codes)
    if task.service_name is None:
        return Stop("one_off", reason, exit_codes)
    code = task.stopCode or ""
    if code == "SpotInterruption":
        return Stop("spot_interruption", reason, exit_codes)
    if code == "TerminationNotice":
        return Stop("termination_notice", reason, exit_codes)
    if code == "UserInitiated":
        return Stop("user_initiated", reason, exit_codes)
    if code == "InfrastructureHealth":
        return Stop("infrastructure", reason, exit_codes)
    if code == "TaskFailedToStart":
        return Stop("failed_to_start", reason or _container_reason(task), exit_codes)
    if code == "ServiceSchedulerInitiated":
        if _HEALTH.search(reason):
            return Stop("health_check", reason, exit_codes)
        if _SCALING.search(reason) or "deployment" in reason.lower():
            return Stop(_scaling_kind(task, reason, active_deployment), reason, exit_codes)
        return Stop("scheduler_other", reason, exit_codes)
    if code == "EssentialContainerExited" or (not code and "essential container" in reason.lower()):
        failed = {n: c for n, c in exit_codes.items() if c not in (None, 0)}
        oom = any(_OOM.search(c.reason or "") for c in task.containers)
        if failed or oom:
            return Stop("exit_nonzero", _container_reason(task) or reason, exit_codes)
        if any(c == 0 for c in exit_codes.values()):
            return Stop("exit_zero", reason, exit_codes)
        # Essential container gone with no exit code at all: it never ran properly.
        return Stop("exit_nonzero", _container_reason(task) or reason, exit_codes)
    if not code and _HEALTH.search(reason):
        return Stop("health_check", reason, exit_codes)
    return Stop("scheduler_other", reason, exit_codes)


def _scaling_kind(task: EcsTaskDetail, reason: str, active_deployment: str | None) -> str:
    """"Scaling activity initiated by (deployment ecs-svc/N)" covers both scale-in and the replacement
    of old tasks by a newer deployment: the task's own deployment (startedBy) tells them apart."""
    own = task.startedBy if task.startedBy and task.startedBy.startswith("ecs-svc/") else None
    if active_deployment and own and own != active_deployment:
        return "deployment_replacement"
    match = _DEPLOYMENT_IN_REASON.search(reason)
    if match and own and match.group(1) != own:
        return "deployment_replacement"
    return "scale_in"


def _container_reason(task: EcsTaskDetail) -> str:
    parts = [f"{c.name}: {c.reason}" for c in task.containers if c.reason]
    return "; ".join(parts)

"""Put running ECS services onto the current secret values: force a new deployment, wait until done.

ECS resolves `secrets` when a task starts, so tasks started before a rotation keep the old password
until they are replaced. A rotation retires the old password only after every service reports a single
COMPLETED deployment with its desired count running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tootstack.errors import DependencyUnavailable, TootstackError


class ServicesNotStable(TootstackError):
    """Services did not finish their deployment in the time available; the old credential is kept."""


@dataclass
class EcsRedeployer:
    client: Any
    cluster: str
    services: list[str]
    wait_seconds: float = 600.0
    poll_seconds: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    forced: list[str] = field(default_factory=list)

    def redeploy(self) -> None:
        for service in self.services:
            try:
                self.client.update_service(cluster=self.cluster, service=service, forceNewDeployment=True)
            except self.client.exceptions.ServiceNotFoundException:
                raise TootstackError(f"ECS service {service} not found in cluster {self.cluster}") from None
            except self.client.exceptions.ServiceNotActiveException:
                continue  # a draining/inactive service runs no tasks that hold the old password
            self.forced.append(service)

    def unstable(self) -> list[str]:
        """Services whose deployment is not finished, each with a short reason."""
        pending: list[str] = []
        for start in range(0, len(self.services), 10):
            batch = self.services[start:start + 10]
            described = self.client.describe_services(cluster=self.cluster, services=batch)
            for failure in described.get("failures", []):
                pending.append(f"{failure.get('arn', '?')}: {failure.get('reason', 'missing')}")
            for svc in described["services"]:
                if svc.get("status") != "ACTIVE":
                    continue
                deployments = svc.get("deployments", [])
                primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
                name = svc.get("serviceName", "?")
                if len(deployments) > 1:
                    pending.append(f"{name}: {len(deployments)} deployments")
                elif primary and primary.get("rolloutState") == "FAILED":
                    raise TootstackError(f"ECS service {name}: deployment failed ({primary.get('rolloutStateReason', '')[:120]})")
                elif primary and primary.get("rolloutState") not in (None, "COMPLETED"):
                    pending.append(f"{name}: rollout {primary.get('rolloutState')}")
                elif svc.get("runningCount", 0) != svc.get("desiredCount", 0):
                    pending.append(f"{name}: {svc.get('runningCount', 0)}/{svc.get('desiredCount', 0)} running")
        return pending

    def wait(self) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                pending = self.unstable()
            except TootstackError:
                raise
            except Exception as exc:  # any API failure here means "not verified"
                raise DependencyUnavailable(f"cannot describe ECS services: {type(exc).__name__}") from None
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise ServicesNotStable(
                    "services still deploying, old Redis password kept valid; re-run finishSecret to complete: "
                    + "; ".join(pending)
                )
            self.sleep(self.poll_seconds)

"""State shared by the rehearsal's stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class RehearsalContext:
    root: Path                                   # project root (template.yaml, functions/, statemachines/)
    stack_name: str
    region: str
    parameters: dict[str, str]                   # stack parameters used for the rehearsal
    sam_template: dict[str, Any] = field(default_factory=dict)   # template.yaml as parsed
    # template.yaml after the SAM transform, as CloudFormation gets it (before stand-ins replace what moto
    # lacks): the edge-cache stage reads its distribution, each redeploy compares the next one with it
    translated_template: dict[str, Any] = field(default_factory=dict)
    cfn_template: dict[str, Any] = field(default_factory=dict)   # as deployed into moto (stand-ins in), the last deploy's
    outputs: dict[str, str] = field(default_factory=dict)        # stack outputs from moto
    physical_ids: dict[str, str] = field(default_factory=dict)   # logical id -> physical id (deployed)
    skipped: list[dict[str, str]] = field(default_factory=list)  # resources moto did not create
    redis: Any = None        # tootstack_dev.local.redis.RedisServer standing in for ElastiCache
    hub: Any = None          # tootstack_dev.local.registry registry standing in for Docker Hub (token auth)
    ecr: Any = None          # tootstack_dev.local.registry registry standing in for ECR (basic auth)
    aws: Any = None          # tootstack_dev.local.aws harness: moto + Lambda routing + ECS task simulation
    progress: Callable[[str], None] = print
    # What the last deploy put in place of each resource moto does not create (logical id -> StandIn): a
    # redeploy keeps those CloudFormation does not update
    stand_ins: dict[str, Any] = field(default_factory=dict)
    # Hand-over between stages
    resources: list[dict[str, str]] = field(default_factory=list)     # deploy: the stack's resources (report)
    mirrored_images: dict[str, str] = field(default_factory=dict)     # mirror: repository -> pinned image
    upgrade_output: dict[str, Any] = field(default_factory=dict)      # upgrade: the execution's output
    redis_routed: str = ""             # the rotation function, once routed to the Redis stand-in (first boot)
    edge_cache: list[dict[str, Any]] = field(default_factory=list)    # edge-cache: each path's result (report)
    iam: dict[str, Any] = field(default_factory=dict)                 # least-privilege: the findings (report)

    def physical(self, logical_id: str) -> str:
        """The physical id (name or ARN) of a resource of the deployed stack; a clear error if it is absent."""
        value = self.physical_ids.get(logical_id)
        if not value:
            from tootstack.errors import TootstackError

            raise TootstackError(f"{logical_id} is not in the deployed stack")
        return value

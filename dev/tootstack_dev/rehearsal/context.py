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
    cfn_template: dict[str, Any] = field(default_factory=dict)   # after the SAM transform
    outputs: dict[str, str] = field(default_factory=dict)        # stack outputs from moto
    physical_ids: dict[str, str] = field(default_factory=dict)   # logical id -> physical id (deployed)
    skipped: list[dict[str, str]] = field(default_factory=list)  # resources moto did not create
    redis: Any = None        # tootstack_dev.local.redis.RedisServer standing in for ElastiCache
    hub: Any = None          # tootstack_dev.local.registry registry standing in for Docker Hub (token auth)
    ecr: Any = None          # tootstack_dev.local.registry registry standing in for ECR (basic auth)
    aws: Any = None          # tootstack_dev.local.aws harness: moto + Lambda routing + ECS task simulation
    progress: Callable[[str], None] = print
    extras: dict[str, Any] = field(default_factory=dict)         # stage-to-stage hand-over

    def physical(self, logical_id: str) -> str:
        """The physical id (name or ARN) of a resource of the deployed stack; a clear error if it is absent."""
        value = self.physical_ids.get(logical_id)
        if not value:
            from tootstack.errors import TootstackError

            raise TootstackError(f"{logical_id} is not in the deployed stack")
        return value

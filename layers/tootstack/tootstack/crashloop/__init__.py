"""Crashloop detection: rolls bad deployments back, alerts (and leaves running) a crash-looping stable
revision. See docs/crashloop.md.

- models:   Powertools Parser models of "ECS Task State Change" / "ECS Deployment State Change"
- classify: crash or ordinary stop, per stop kind
- detector: sliding window per service + task definition -> rollback | alert | escalate decisions
- store:    MemoryStore (replay, tests) and DynamoStore (Lambda: TTL, conditional writes)
- actions:  ECS/SNS halt actions, `is_halted(service)`, `resume(service)`
- runtime:  the Lambda wiring; cli: `tootstack crashloop replay|resume`
"""

from importlib import import_module
from typing import Any

# Loaded on first use: the Parser models cost ~0.15 s to import, which every `tootstack` command
# (the CLI imports tootstack_dev.crashloop.cli to register its sub-command) would otherwise pay.
_EXPORTS = {
    "HALT_TAG": "actions", "is_halted": "actions",
    "Decision": "detector", "Detector": "detector", "DetectorConfig": "detector",
    "DynamoStore": "store", "MemoryStore": "store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)

"""Crashloop detection that halts deployments (issue 7). See docs/crashloop.md.

- models:   Powertools Parser models of "ECS Task State Change" / "ECS Deployment State Change"
- classify: crash or ordinary stop, per stop kind
- detector: sliding window per service + task definition -> rollback | scale_to_zero decisions
- store:    MemoryStore (replay, tests) and DynamoStore (Lambda: TTL, conditional writes)
- actions:  ECS/SNS halt actions, `is_halted(service)`, `resume(service)`
- runtime:  the Lambda wiring; cli: `tootstack crashloop replay|resume`
"""

from tootstack.crashloop.actions import HALT_TAG, is_halted
from tootstack.crashloop.detector import Decision, Detector, DetectorConfig
from tootstack.crashloop.store import DynamoStore, MemoryStore

__all__ = ["HALT_TAG", "Decision", "Detector", "DetectorConfig", "DynamoStore", "MemoryStore", "is_halted"]

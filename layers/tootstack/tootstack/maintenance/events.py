"""The maintenance state machine's contract with its gate (statemachines/maintenance.asl.json -> functions/maintenance_gate).

{"input": <the execution input>}: {} from the daily schedule, or an operator's overrides, which
plan.build_plan checks key by key (minimums, booleans) with its own messages.
"""

from __future__ import annotations

from typing import Any, Optional

from tootstack.contracts import Event, parse


class GateRequest(Event):
    input: Optional[dict[str, Any]] = None     # null or absent: the stack's defaults


def parse_gate_request(event: Any) -> GateRequest:
    return parse(GateRequest, event, "maintenance gate event")

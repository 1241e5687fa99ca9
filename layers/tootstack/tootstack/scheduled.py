"""The event of a function that reads nothing from it: an EventBridge Scheduler schedule (its target has no
Input) or the console's Test. Its contract is "a JSON object, keys ignored" (what the function reads comes
from its environment), so no model is built and pydantic stays out of these functions' cold starts."""

from __future__ import annotations

from typing import Any

from tootstack.errors import InvalidInput


def require_object(event: Any, what: str) -> dict[str, Any]:
    """`event` as a dict ({} for null); InvalidInput otherwise, as tootstack.contracts.parse words it."""
    if event is None:
        return {}
    if not isinstance(event, dict):
        raise InvalidInput(f"{what}: the event must be a JSON object, got {type(event).__name__}")
    return event

"""The detector's one time format: whole-second UTC ISO 8601 ("2026-11-01T10:00:00Z") <-> epoch seconds.

Episodes, halts and nudge steps are stored and scheduled with these strings; events arrive as datetimes
(the event models parse EventBridge's and ECS's timestamps), so this is the only place that reads or
writes one.
"""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def iso(epoch: float) -> str:
    """Epoch seconds as "YYYY-MM-DDTHH:MM:SSZ" (UTC, fraction dropped)."""
    return datetime.fromtimestamp(int(epoch // 1), timezone.utc).strftime(FORMAT)


def epoch(value: str | datetime, default: float | None = None) -> float:
    """Epoch seconds of an ISO 8601 string or datetime (naive means UTC). A value that is not one raises
    ValueError, or returns `default` when one is given (a missing or unreadable stored time)."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except (TypeError, ValueError):
        if default is not None:
            return default
        raise ValueError(f"not an ISO 8601 time: {str(value)[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()

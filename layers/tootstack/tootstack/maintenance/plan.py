"""What a maintenance run does, and whether it may run now.

Input (schedule or console), every key optional:
    {"media_days": 7, "preview_cards_days": 180, "prune_accounts": false}
Defaults come from the stack parameters (env MAINTENANCE_MEDIA_DAYS, MAINTENANCE_PREVIEW_CARDS_DAYS,
MAINTENANCE_PRUNE_ACCOUNTS). Bounds: `tootctl preview_cards remove` refuses fewer than 14 days
(Mastodon's minimum); media keeps at least 1 day (our floor: 0 would drop what users are looking at
right now). A bad value is refused with InvalidInput and nothing runs.

The run is skipped (a successful execution whose output says why) when:
- a service of the stack is halted by the crashloop detector (tootstack.crashloop.is_halted), or
- an upgrade holds the upgrade lock (SSM parameter $UPGRADE_LOCK_PARAMETER exists and is not "none")
  and its holder execution is still RUNNING (a lock left by a stopped or failed upgrade is ignored:
  the next upgrade recovers it).
Every skip is counted (tootstack.maintenance.skips): MaintenanceSkippedAlarm tells the operator when
maintenance has been skipped for a day or more.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from tootstack.errors import InvalidInput

MEDIA_DAYS_MIN = 1
PREVIEW_CARDS_DAYS_MIN = 14   # tootctl preview_cards remove: "not below 14" (Mastodon)
DAYS_MAX = 3650
TOOTCTL = "bin/tootctl"       # relative to the image's WORKDIR /opt/mastodon
KEYS = ("media_days", "preview_cards_days", "prune_accounts")
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Settings:
    media_days: int = 7
    preview_cards_days: int = 180
    prune_accounts: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        raw = {
            "media_days": env.get("MAINTENANCE_MEDIA_DAYS", "7"),
            "preview_cards_days": env.get("MAINTENANCE_PREVIEW_CARDS_DAYS", "180"),
            "prune_accounts": env.get("MAINTENANCE_PRUNE_ACCOUNTS", "false"),
        }
        return _validated(raw, cls(), where="stack parameter")


def _days(name: str, value: Any, low: int, where: str) -> int:
    # ASCII digits only: str.isdigit() and int() also take "²" or "４", which int() then refuses or reads.
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not _DIGITS.fullmatch(str(value).strip()):
        raise InvalidInput(f"{where} {name} must be a whole number of days (digits 0-9), got {str(value)[:40]!r}")
    days = int(str(value).strip())
    if days < low:
        raise InvalidInput(f"{where} {name}={days} is below the minimum of {low} days")
    if days > DAYS_MAX:
        raise InvalidInput(f"{where} {name}={days} is above {DAYS_MAX} days")
    return days


def _flag(name: str, value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"{where} {name} must be true or false, got {value!r}")


def _validated(raw: dict[str, Any], defaults: Settings, where: str) -> Settings:
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise InvalidInput(f"unknown maintenance input key(s): {', '.join(unknown)} (expected {', '.join(KEYS)})")
    return Settings(
        media_days=_days("media_days", raw.get("media_days", defaults.media_days), MEDIA_DAYS_MIN, where),
        preview_cards_days=_days("preview_cards_days", raw.get("preview_cards_days", defaults.preview_cards_days),
                                 PREVIEW_CARDS_DAYS_MIN, where),
        prune_accounts=_flag("prune_accounts", raw.get("prune_accounts", defaults.prune_accounts), where),
    )


def build_plan(event_input: Any, defaults: Settings) -> list[dict[str, Any]]:
    """The steps of a run, each a toolbox container command (argv list, no shell)."""
    if event_input is None:
        event_input = {}
    if not isinstance(event_input, dict):
        raise InvalidInput("maintenance input must be a JSON object")
    s = _validated(event_input, defaults, where="input")
    steps = [
        {"name": "media-remove", "command": [TOOTCTL, "media", "remove", "--days", str(s.media_days)]},
        {"name": "preview-cards-remove",
         "command": [TOOTCTL, "preview_cards", "remove", "--days", str(s.preview_cards_days)]},
    ]
    if s.prune_accounts:
        steps.append({"name": "accounts-prune", "command": [TOOTCTL, "accounts", "prune"]})
    return steps


def gate(
    event_input: Any,
    *,
    defaults: Settings,
    services: list[str],
    is_halted: Callable[[str], bool],
    lock: Callable[[], dict[str, Any] | None],
    holder_state: Callable[[dict[str, Any]], str | None] = lambda held: None,
) -> dict[str, Any]:
    """Validate the input (InvalidInput before anything else), then decide: run the plan, or skip and say why.
    `holder_state(held)`: the status of the lock holder's execution (None: cannot tell, the lock counts)."""
    steps = build_plan(event_input, defaults)
    held = lock()
    stale = ""
    if held is not None:
        state = holder_state(held)
        if state in (None, "RUNNING"):
            return {"proceed": False, "reason": f"an upgrade is running (upgrade lock held: {json.dumps(held, sort_keys=True)[:300]})",
                    "steps": []}
        stale = f"; ignored a stale upgrade lock (holder {held.get('execution')} is {state})"
    halted = [name for name in services if is_halted(name)]
    if halted:
        return {"proceed": False, "reason": f"service(s) halted by the crashloop detector: {', '.join(halted)}",
                "steps": []}
    return {"proceed": True, "reason": "no upgrade running and no service halted" + stale, "steps": steps}

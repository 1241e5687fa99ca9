"""Spot fallback for Sidekiq: the decision, as a pure function of what was observed.

Two services process the same queues: a Fargate Spot service (X86_64 task definition: Spot has no
ARM64) that target tracking scales on queue latency, and an on-demand ARM64 service kept at 0. When
Spot cannot place tasks or its tasks are interrupted AND the queue latency grows, on-demand capacity
takes over (desired = the Spot shortfall, capped). When Spot has been back at full strength for a while
and the latency is low again, on-demand hands back (desired 0). Nothing changes while a service is
halted by the crashloop detector. The controller Lambda (functions/spot_fallback) gathers the
observation, calls `decide`, applies the on-demand desired count and stores the new state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from tootstack.errors import InvalidInput

SPOT = "spot"
ON_DEMAND = "on_demand"


@dataclass(frozen=True)
class FallbackConfig:
    latency_high_s: float = 60.0     # take over when the latency is above this and Spot is in trouble
    latency_low_s: float = 10.0      # hand back only below this
    hold_s: float = 900.0            # stay on on-demand at least this long (no flapping)
    spot_stable_s: float = 600.0     # Spot at full strength this long before handing back
    trouble_window_s: float = 600.0  # an interruption or placement failure this recent counts
    max_on_demand: int = 2

    def __post_init__(self) -> None:
        if not (0 <= self.latency_low_s < self.latency_high_s):
            raise InvalidInput("latency_low_s must be below latency_high_s")
        if self.max_on_demand < 1 or self.hold_s < 0 or self.spot_stable_s < 0 or self.trouble_window_s < 0:
            raise InvalidInput("max_on_demand must be >= 1 and the durations >= 0")


@dataclass(frozen=True)
class Observation:
    now: float
    latency_s: float | None          # the Spot service's queue latency (None: no data)
    spot_desired: int
    spot_running: int
    on_demand_desired: int
    last_spot_trouble_at: float | None = None   # last SpotInterruption stop or placement failure
    halted: bool = False


@dataclass(frozen=True)
class State:
    mode: str = SPOT
    since: float = 0.0
    spot_full_since: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "State":
        if not data:
            return cls()
        mode = data.get("mode", SPOT)
        if mode not in (SPOT, ON_DEMAND):
            raise InvalidInput(f"unknown fallback mode {mode!r}")
        full = data.get("spot_full_since")
        return cls(mode, float(data.get("since", 0.0)), float(full) if full is not None else None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    action: str                 # "none" | "take_over" | "scale_on_demand" | "hold" | "hand_back"
    on_demand_desired: int
    state: State
    reason: str

    @property
    def changes(self) -> bool:
        return self.action in ("take_over", "scale_on_demand", "hand_back")


def decide(obs: Observation, state: State, cfg: FallbackConfig = FallbackConfig()) -> Decision:
    if obs.halted:
        return Decision("none", obs.on_demand_desired, state, "a Sidekiq service is halted by the crashloop detector: hands off")
    short = obs.spot_running < obs.spot_desired
    gap = max(0, obs.spot_desired - obs.spot_running)
    recent_trouble = obs.last_spot_trouble_at is not None and obs.now - obs.last_spot_trouble_at <= cfg.trouble_window_s
    troubled = short or recent_trouble
    full_since = None if short else (state.spot_full_since if state.spot_full_since is not None else obs.now)
    state = replace(state, spot_full_since=full_since)
    latency = obs.latency_s
    high = latency is not None and latency > cfg.latency_high_s
    want = min(cfg.max_on_demand, max(1, gap))

    if state.mode == SPOT:
        if troubled and high:
            why = f"Spot {obs.spot_running}/{obs.spot_desired} running" if short else "Spot tasks interrupted recently"
            return Decision("take_over", want, replace(state, mode=ON_DEMAND, since=obs.now),
                            f"{why} and queue latency {latency:.0f}s > {cfg.latency_high_s:.0f}s: on-demand takes over ({want})")
        if obs.on_demand_desired:
            return Decision("hand_back", 0, state, "on-demand running outside a fallback: back to 0")
        return Decision("none", 0, state, "Spot is serving the queues")

    # mode ON_DEMAND
    stable_for = obs.now - full_since if full_since is not None else 0.0
    if (full_since is not None and stable_for >= cfg.spot_stable_s and not recent_trouble
            and latency is not None and latency < cfg.latency_low_s and obs.now - state.since >= cfg.hold_s):
        return Decision("hand_back", 0, replace(state, mode=SPOT, since=obs.now),
                        f"Spot at full strength for {stable_for:.0f}s and latency {latency:.0f}s < {cfg.latency_low_s:.0f}s: hand back")
    if high and troubled and want > obs.on_demand_desired:
        return Decision("scale_on_demand", want, state, f"latency {latency:.0f}s still high and Spot short by {gap}: on-demand {want}")
    keep = max(1, obs.on_demand_desired)
    return Decision("hold" if keep == obs.on_demand_desired else "scale_on_demand", keep, state,
                    "on-demand holds until Spot is stable and the latency is low")

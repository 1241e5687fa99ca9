"""Spot fallback decisions: take over when Spot is short/interrupted and latency grows, hand back later."""

import pytest
from tootstack.autoscale.spot_fallback import (
    ON_DEMAND,
    SPOT,
    Decision,
    FallbackConfig,
    Observation,
    State,
    decide,
)
from tootstack.errors import InvalidInput

CFG = FallbackConfig(latency_high_s=60, latency_low_s=10, hold_s=900, spot_stable_s=600, trouble_window_s=600, max_on_demand=2)


def obs(now, latency, spot_desired=1, spot_running=1, on_demand=0, trouble=None, halted=False):
    return Observation(now, latency, spot_desired, spot_running, on_demand, trouble, halted)


def test_quiet_spot_changes_nothing():
    d = decide(obs(1000, 5), State(), CFG)
    assert (d.action, d.on_demand_desired, d.state.mode) == ("none", 0, SPOT) and not d.changes


def test_high_latency_alone_is_for_autoscaling_not_fallback():
    assert decide(obs(1000, 500), State(), CFG).action == "none"


def test_spot_short_but_queues_fine_waits():
    assert decide(obs(1000, 20, spot_desired=2, spot_running=0), State(), CFG).action == "none"


def test_take_over_when_spot_cannot_place_and_latency_grows():
    d = decide(obs(1000, 120, spot_desired=3, spot_running=1), State(), CFG)
    assert d.action == "take_over" and d.on_demand_desired == 2 and d.state.mode == ON_DEMAND and d.state.since == 1000


def test_take_over_after_an_interruption_even_when_replaced():
    d = decide(obs(1000, 90, trouble=800), State(), CFG)
    assert d.action == "take_over" and d.on_demand_desired == 1


def test_old_interruption_does_not_count():
    assert decide(obs(1000, 90, trouble=100), State(), CFG).action == "none"


def test_full_cycle_take_over_hold_hand_back():
    state = decide(obs(0, 120, spot_desired=1, spot_running=0), State(), CFG).state
    # Spot comes back at t=400; latency falls. Hand back needs 900 s since the take-over AND 600 s of full Spot.
    d = decide(obs(400, 5, on_demand=1), state, CFG)
    assert d.action == "hold" and d.on_demand_desired == 1 and d.state.spot_full_since == 400
    d = decide(obs(950, 5, on_demand=1), d.state, CFG)
    assert d.action == "hold"                          # held 950 s, but Spot stable only 550 s
    d = decide(obs(1001, 5, on_demand=1), d.state, CFG)
    assert d.action == "hand_back" and d.on_demand_desired == 0 and d.state.mode == SPOT
    state = State(mode=ON_DEMAND, since=500, spot_full_since=0)
    assert decide(obs(1300, 5, on_demand=1), state, CFG).action == "hold"   # Spot stable, held only 800 s


def test_no_hand_back_while_latency_is_not_low():
    state = State(mode=ON_DEMAND, since=0, spot_full_since=0)
    assert decide(obs(5000, 30, on_demand=1), state, CFG).action == "hold"
    assert decide(obs(5000, None, on_demand=1), state, CFG).action == "hold"   # no data: keep on-demand


def test_spot_dropping_again_resets_stability():
    state = State(mode=ON_DEMAND, since=0, spot_full_since=0)
    d = decide(obs(5000, 5, spot_desired=2, spot_running=1, on_demand=1), state, CFG)
    assert d.action == "hold" and d.state.spot_full_since is None


def test_scales_on_demand_up_to_the_cap_when_the_gap_grows():
    state = State(mode=ON_DEMAND, since=0)
    d = decide(obs(100, 200, spot_desired=4, spot_running=0, on_demand=1), state, CFG)
    assert d.action == "scale_on_demand" and d.on_demand_desired == 2


def test_halted_means_hands_off():
    d = decide(obs(1000, 500, spot_desired=2, spot_running=0, halted=True), State(), CFG)
    assert d.action == "none" and not d.changes and d.on_demand_desired == 0


def test_stray_on_demand_is_returned_to_zero():
    assert decide(obs(1000, 5, on_demand=1), State(), CFG).action == "hand_back"


def test_state_round_trip_and_bad_config():
    s = State(ON_DEMAND, 12.0, 3.0)
    assert State.from_dict(s.as_dict()) == s and State.from_dict(None) == State()
    with pytest.raises(InvalidInput):
        State.from_dict({"mode": "both"})
    with pytest.raises(InvalidInput):
        FallbackConfig(latency_high_s=5, latency_low_s=10)
    assert isinstance(decide(obs(0, 0), State()), Decision)

"""Crashloop detector logic (pure, in-memory state): classification of recorded-shape events, the
sliding window, the rollback / scale_to_zero decision, and hypothesis properties."""

import json
import random
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tootstack_dev.crashloop import synth
from tootstack.crashloop.classify import CRASH_KINDS, classify
from tootstack.crashloop.detector import Detector, DetectorConfig, window_reached
from tootstack.crashloop.models import EcsDeploymentStateChangeEvent, parse_event
from tootstack.crashloop.store import MemoryStore
from tootstack.errors import InvalidInput

DATA = Path(__file__).parents[1] / "data" / "ecs_events"
E = synth.EPOCH
TD1 = synth.task_definition_arn("web", 1)
TD2 = synth.task_definition_arn("web", 2)

EXPECTED_KIND = {
    "task_exit_nonzero": "exit_nonzero",
    "task_oom": "exit_nonzero",
    "task_exit_zero": "exit_zero",
    "task_elb_health_check": "health_check",
    "task_container_health_check": "health_check",
    "task_image_pull": "failed_to_start",
    "task_secrets": "failed_to_start",
    "task_scale_in": "scale_in",
    "task_deployment_replacement": "deployment_replacement",
    "task_spot_interruption": "spot_interruption",
    "task_termination_notice": "termination_notice",
    "task_user_initiated": "user_initiated",
    "task_oneoff_exit_zero": "one_off",
    "task_oneoff_exit_nonzero": "one_off",
}


def _feed(detector, events):
    decisions = []
    for i, event in enumerate(events):
        d = detector.replay(event)
        if d is not None:
            decisions.append((i, d))
    return decisions


def test_every_task_fixture_has_an_expected_kind():
    on_disk = {p.stem for p in DATA.glob("task_*.json")}
    assert on_disk == set(EXPECTED_KIND)


@pytest.mark.parametrize("name", sorted(EXPECTED_KIND))
def test_fixture_classification(name):
    event = parse_event(json.loads((DATA / f"{name}.json").read_text()))
    stop = classify(event.detail)
    assert stop.kind == EXPECTED_KIND[name]
    assert stop.is_crash == (EXPECTED_KIND[name] in CRASH_KINDS)


@pytest.mark.parametrize("name", ["deployment_in_progress", "deployment_completed", "deployment_failed", "deployment_in_progress_rollback"])
def test_deployment_fixtures_parse(name):
    event = parse_event((DATA / f"{name}.json").read_text())
    assert isinstance(event, EcsDeploymentStateChangeEvent)
    assert event.service_arn.endswith(":service/tootstack/web")
    assert event.detail.deploymentId.startswith("ecs-svc/")


def test_replacement_told_apart_from_scale_in_by_the_active_deployment():
    event = parse_event(synth.task_stopped("scale_in", deployment="ecs-svc/1"))
    assert classify(event.detail).kind == "scale_in"
    assert classify(event.detail, active_deployment="ecs-svc/2").kind == "deployment_replacement"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("{oops", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"detail-type": "EC2 Instance State-change Notification"}), "unsupported detail-type"),
        (json.dumps({**synth.task_stopped("exit_nonzero"), "detail": {"lastStatus": "STOPPED"}}), "detail.clusterArn"),
        (json.dumps({**synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED"), "resources": []}), "resources[0]"),
    ],
    ids=["not-json", "not-an-object", "other-detail-type", "task-missing-fields", "deployment-without-service"],
)
def test_malformed_events_are_rejected_with_a_specific_message(raw, fragment):
    store = MemoryStore()
    with pytest.raises(InvalidInput, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        Detector(store=store).process(raw)
    assert store.services == {} and store.crashes == {}


def test_invalid_thresholds_are_rejected():
    with pytest.raises(InvalidInput):
        DetectorConfig(threshold=0)
    with pytest.raises(InvalidInput):
        DetectorConfig(window_seconds=0)


def _crash(i, td=TD1, seconds=60, kind="exit_nonzero", service="web", deployment="ecs-svc/1", **kw):
    return synth.task_stopped(kind, service=service, task_definition=td, at=E + timedelta(seconds=i * seconds), deployment=deployment, **kw)


def test_third_crash_in_window_alerts_and_leaves_running_when_nothing_is_stable():
    detector = Detector()
    assert detector.process(_crash(0)) is None
    assert detector.process(_crash(1)) is None
    decision = detector.process(_crash(2))
    assert decision is not None and decision.action == "alert" and decision.via == "none"
    assert decision.service == "tootstack/web" and decision.crash_count == 3
    assert "no stable definition" in decision.reason and "left running" in decision.reason
    assert [e["kind"] for e in decision.evidence] == ["exit_nonzero"] * 3
    assert all(e["exit_codes"] == {"web": 1} for e in decision.evidence)


def test_crashes_spread_wider_than_the_window_do_not_halt():
    detector = Detector(DetectorConfig(threshold=3, window_seconds=600))
    assert _feed(detector, [_crash(i, seconds=360) for i in range(6)]) == []   # 0, 6, 12 ... minutes apart


def test_window_reached_is_a_function_of_the_set():
    assert window_reached([0, 100, 200], 3, 200) == (True, 3)
    assert window_reached([200, 0, 100], 3, 199) == (False, 2)


def test_rollback_to_the_stable_definition_during_a_deployment():
    events = [
        synth.task_stopped("scale_in", task_definition=TD1, deployment="ecs-svc/1", at=E),
        synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1", at=E + timedelta(seconds=5)),
        synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", deployment="ecs-svc/2", at=E + timedelta(seconds=60)),
        *[_crash(2 + i, td=TD2, deployment="ecs-svc/2", kind="elb_health_check") for i in range(3)],
    ]
    decisions = _feed(Detector(), events)
    assert len(decisions) == 1
    index, decision = decisions[0]
    assert index == 5 and decision.action == "rollback" and decision.via == "ecs_api"
    assert decision.target_task_definition == TD1 and decision.task_definition == TD2


def test_completion_seen_before_its_task_definition_is_known_is_resolved_later():
    events = [
        synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1", at=E),
        synth.task_stopped("user_initiated", task_definition=TD1, deployment="ecs-svc/1", at=E + timedelta(seconds=1)),
        *[_crash(2 + i, td=TD2, deployment="ecs-svc/2") for i in range(3)],
    ]
    [(_, decision)] = _feed(Detector(), events)
    assert decision.action == "rollback" and decision.target_task_definition == TD1


def test_resolver_supplies_the_task_definition_of_a_completed_deployment():
    calls = []

    def resolve(cluster, service, deployment):
        calls.append((cluster, service, deployment))
        return TD1

    detector = Detector(resolve_deployment=resolve)
    detector.process(synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1"))
    assert calls == [("tootstack", "web", "ecs-svc/1")]
    assert detector.store.get_service("tootstack/web").stable_task_definition == TD1


def test_circuit_breaker_already_rolling_back_is_left_to_act():
    events = [
        synth.task_stopped("scale_in", task_definition=TD1, deployment="ecs-svc/1", at=E),
        synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1", at=E + timedelta(seconds=5)),
        synth.deployment_event("SERVICE_DEPLOYMENT_FAILED", deployment="ecs-svc/2", at=E + timedelta(seconds=90)),
        *[_crash(2 + i, td=TD2, deployment="ecs-svc/2", kind="image_pull") for i in range(3)],
    ]
    [(_, decision)] = _feed(Detector(), events)
    assert decision.action == "rollback" and decision.via == "circuit_breaker"


def test_steady_state_crash_of_the_stable_definition_alerts_without_stopping():
    events = [
        synth.task_stopped("scale_in", task_definition=TD1, deployment="ecs-svc/1", at=E),
        synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1", at=E + timedelta(seconds=5)),
        *[_crash(2 + i, td=TD1) for i in range(3)],
    ]
    [(index, decision)] = _feed(Detector(), events)
    assert index == 4 and decision.action == "alert" and "it is the stable definition" in decision.reason
    assert decision.target_task_definition is None and decision.episode_started_at == "2026-11-02T09:02:00Z"


def test_rolled_back_definition_crashing_too_alerts_with_the_rollback_as_tried():
    events = [
        synth.task_stopped("scale_in", task_definition=TD1, deployment="ecs-svc/1", at=E),
        synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1", at=E + timedelta(seconds=5)),
        *[_crash(2 + i, td=TD2, deployment="ecs-svc/2") for i in range(4)],
        *[_crash(10 + i, td=TD1, deployment="ecs-svc/3") for i in range(3)],
        *[_crash(20 + i, td=TD1, deployment="ecs-svc/3") for i in range(3)],
    ]
    decisions = [d for _, d in _feed(Detector(), events)]
    assert [d.action for d in decisions] == ["rollback", "alert"]
    assert decisions[1].tried[0].startswith("rolled back from web:2 to web:1")
    assert "the deployment is not the cause" in decisions[1].reason


def test_crashes_before_a_resume_no_longer_count():
    store = MemoryStore()
    detector = Detector(store=store)
    assert len(_feed(detector, [_crash(i) for i in range(3)])) == 1
    store.clear_halt("tootstack/web", resumed_at=(E + timedelta(seconds=150)).timestamp())
    assert _feed(detector, [_crash(i) for i in range(3)]) == []            # late duplicates of old crashes
    assert _feed(detector, [_crash(10), _crash(11)]) == []
    assert len(_feed(detector, [_crash(12)])) == 1


def test_unapplied_halt_is_returned_again_so_a_retry_applies_it():
    detector = Detector()
    first = [detector.process(_crash(i)) for i in range(3)][-1]
    again = detector.process(_crash(3))
    assert again is not None and again.action == first.action and again.event_id == first.event_id


def test_other_clusters_and_one_off_tasks_are_ignored():
    detector = Detector(DetectorConfig(cluster="arn:aws:ecs:us-east-1:123456789012:cluster/tootstack"))
    other = [synth.task_stopped("exit_nonzero", cluster="staging", at=E + timedelta(seconds=i)) for i in range(5)]
    one_off = [synth.task_stopped("exit_nonzero", service=None, at=E + timedelta(seconds=i)) for i in range(5)]
    assert _feed(detector, other + one_off) == []


# --- properties ---------------------------------------------------------------------------------
SERVICES = ("web", "streaming", "sidekiq-default")
offsets = st.integers(min_value=0, max_value=3600)


@st.composite
def benign_traces(draw):
    events = []
    for _ in range(draw(st.integers(1, 40))):
        service = draw(st.sampled_from(SERVICES))
        rev = draw(st.integers(1, 3))
        at = E + timedelta(seconds=draw(offsets))
        if draw(st.booleans()) and draw(st.booleans()):
            name = draw(st.sampled_from(["SERVICE_DEPLOYMENT_IN_PROGRESS", "SERVICE_DEPLOYMENT_COMPLETED", "SERVICE_DEPLOYMENT_FAILED"]))
            events.append(synth.deployment_event(name, service=service, deployment=f"ecs-svc/{rev}", at=at))
        else:
            kind = draw(st.sampled_from(synth.BENIGN_STOPS))
            events.append(synth.task_stopped(kind, service=service, task_definition=synth.task_definition_arn(service, rev),
                                             deployment=f"ecs-svc/{rev}", new_deployment=f"ecs-svc/{rev + 1}", at=at))
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(benign_traces(), st.integers(1, 4))
def test_scale_in_deployments_spot_and_user_stops_never_halt(events, threshold):
    assert _feed(Detector(DetectorConfig(threshold=threshold, window_seconds=3600)), events) == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    threshold=st.integers(2, 6),
    gaps=st.lists(st.integers(0, 120), min_size=6, max_size=6),
    kinds=st.lists(st.sampled_from(synth.CRASHING_STOPS), min_size=6, max_size=6),
    noise=benign_traces(),
    seed=st.integers(0, 2**32 - 1),
)
def test_n_crashes_within_the_window_always_halt_by_the_nth(threshold, gaps, kinds, noise, seed):
    window = 600
    times, t = [], 0
    for gap in gaps[:threshold]:
        t += gap
        times.append(min(t, window))
    crashes = [synth.task_stopped(kinds[i], service="web", task_definition=TD2, at=E + timedelta(seconds=times[i]))
               for i in range(threshold)]
    trace = list(noise)
    rng = random.Random(seed)
    positions = sorted(rng.randrange(len(trace) + 1) for _ in crashes)
    for offset, (pos, crash) in enumerate(zip(positions, crashes)):
        trace.insert(pos + offset, crash)
    last_crash = max(trace.index(c) for c in crashes)
    decisions = _feed(Detector(DetectorConfig(threshold=threshold, window_seconds=window)), trace)
    web = [(i, d) for i, d in decisions if d.service_name == "web"]
    assert len(web) == 1 and web[0][0] <= last_crash
    assert web[0][1].crash_count >= threshold


@st.composite
def mixed_traces(draw):
    """Per service: maybe a completed deployment first, then stops of ONE task definition (crashes and benign)."""
    setup, stops = [], []
    for service in SERVICES:
        stable = draw(st.booleans())
        if stable:
            setup.append(synth.task_stopped("user_initiated", service=service, task_definition=synth.task_definition_arn(service, 1),
                                            deployment="ecs-svc/1", at=E))
            setup.append(synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", service=service, deployment="ecs-svc/1", at=E))
        for _ in range(draw(st.integers(0, 8))):
            kind = draw(st.sampled_from(synth.CRASHING_STOPS + synth.BENIGN_STOPS))
            stops.append(synth.task_stopped(kind, service=service, task_definition=synth.task_definition_arn(service, 2),
                                            deployment="ecs-svc/2", new_deployment="ecs-svc/3",
                                            at=E + timedelta(seconds=draw(st.integers(10, 1800)))))
    return setup, stops


def _outcome(decisions):
    return sorted((d.service, d.action, d.task_definition, d.target_task_definition or "") for _, d in decisions)


def _alerted(decisions):
    return {(d.service, d.task_definition) for _, d in decisions if d.action in ("alert", "escalate")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_traces(), st.randoms(use_true_random=False), st.integers(2, 4))
def test_duplicate_and_out_of_order_delivery_changes_nothing(trace, rnd, threshold):
    setup, stops = trace
    config = DetectorConfig(threshold=threshold, window_seconds=600)
    in_order = _feed(Detector(config), setup + sorted(stops, key=lambda e: e["detail"]["stoppedAt"]))
    shuffled = list(stops)
    rnd.shuffle(shuffled)
    duplicates = [rnd.choice(setup + stops) for _ in range(rnd.randint(0, 10))] if stops else []
    delivered = list(shuffled)
    for dup in duplicates:   # at-least-once: a copy may come again at any later point
        delivered.insert(rnd.randint(0, len(delivered)), dup)
    delivered_decisions = _feed(Detector(config), setup + delivered)
    # What changes a service (rollbacks) is exactly the same whatever the order. Alerts change nothing: a crash
    # delivered after the alert of a later crash is folded into that episode (a late copy), so in a shuffled
    # order two bursts 10+ minutes apart may make one alert instead of two; every crash-looping revision is
    # still alerted on.
    assert _outcome(d for d in delivered_decisions if d[1].action == "rollback") == \
        _outcome(d for d in in_order if d[1].action == "rollback")
    assert _alerted(delivered_decisions) == _alerted(in_order)


def test_the_escalation_period_defaults_to_an_hour_or_the_window_when_longer():
    """One default for the Lambda (config_from_env) and the replay CLI: DetectorConfig's."""
    assert DetectorConfig().escalate_after_seconds == 3600
    assert DetectorConfig(window_seconds=7200).escalate_after_seconds == 7200
    assert DetectorConfig(window_seconds=600, escalate_after_seconds=5400).escalate_after_seconds == 5400

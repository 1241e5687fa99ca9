"""Crashloop policy under a dependency outage: a stable revision is alerted and left running (never
stopped, so the site serves again when the dependency is back), a bad deployment is still rolled back
by its 3rd crash, and a stable-revision crashloop that goes on is alerted again with what was tried.

The outage is generated (synth.dependency_outage): every Mastodon service (core, web, streaming,
sidekiq-*) on its stable revision, tasks replaced as ECS does while the database is unreachable.
"""

import random
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tootstack_dev.crashloop import synth
from tootstack.crashloop.detector import Detector, DetectorConfig
from tootstack.crashloop.models import parse_event
from tootstack.crashloop.store import MemoryStore

E = synth.EPOCH
SERVICES = tuple(synth.OUTAGE_STOPS)
START = E + timedelta(minutes=30)


def _feed(detector, events):
    decisions = []
    for event in events:
        d = detector.replay(event)
        if d is not None:
            decisions.append((event, d))
    return decisions


def _stopped_at(event):
    return parse_event(event).detail.stoppedAt.timestamp()


def _crash_number(events, decision_event, service, task_definition):
    """How many crashes of this service's task definition had stopped when the decision was made."""
    at = _stopped_at(decision_event)
    return sum(1 for e in events if e["detail-type"] == "ECS Task State Change" and e["detail"]["group"] == f"service:{service}"
               and e["detail"]["taskDefinitionArn"] == task_definition and e["detail"]["stopCode"] != "UserInitiated"
               and _stopped_at(e) <= at)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minutes=st.floats(5, 20), tasks=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_outage_of_every_service_alerts_each_by_its_3rd_crash_and_stops_none(minutes, tasks, seed):
    rng = random.Random(seed)
    outage = synth.dependency_outage(START, minutes, tasks=tasks, rng=rng)
    events = synth.stable_revisions() + outage
    decisions = _feed(Detector(), events)
    assert sorted(d.service_name for _, d in decisions) == sorted(SERVICES)     # one alert each, nothing else
    for event, d in decisions:
        assert d.action == "alert" and d.via == "none" and d.target_task_definition is None
        assert _crash_number(events, event, d.service_name, d.task_definition) == 3
        assert d.event["id"] == event["id"] and d.event["stop_kind"] in ("health_check", "exit_nonzero")
        assert len(d.evidence) == 3 and all(e["task_arn"] for e in d.evidence)
    end = (START + timedelta(minutes=minutes)).timestamp()
    pairs = [(_stopped_at(e), d) for e, d in decisions]
    for service in SERVICES:   # no service is held at zero tasks after the dependency is back
        assert synth.zero_task_seconds(pairs, service, after=end, until=end + 24 * 3600) == 0


def test_bad_deployment_during_the_outage_is_rolled_back_by_its_3rd_crash():
    """web deploys :2 (bad image config: exits 1) while the database is down. The bad revision is rolled
    back to :1 on its 3rd crash; :1 keeps failing its health checks until the database is back and is
    alerted (with the rollback as what was tried), never stopped; the other services are alerted."""
    td2 = synth.task_definition_arn("web", 2)
    outage = synth.dependency_outage(START, 8, rng=random.Random(7))
    deploy_at = START + timedelta(minutes=2)
    bad = [synth.task_stopped("exit_nonzero", service="web", task_definition=td2, deployment="ecs-svc/2", container="web",
                              at=deploy_at + timedelta(seconds=40 * (i + 1))) for i in range(5)]
    events = sorted(
        synth.stable_revisions() + outage + bad
        + [synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service="web", deployment="ecs-svc/2", at=deploy_at)],
        key=lambda e: e["detail"].get("stoppedAt") or e["detail"]["updatedAt"],
    )
    decisions = _feed(Detector(), events)
    web = [(e, d) for e, d in decisions if d.service_name == "web"]
    rollback = [(e, d) for e, d in web if d.action == "rollback"]
    [(event, decision)] = rollback
    assert decision.task_definition == td2 and decision.target_task_definition == synth.task_definition_arn("web", 1)
    assert decision.via == "ecs_api" and event["id"] == bad[2]["id"]           # the 3rd crash of :2
    assert {d.action for _, d in decisions} == {"rollback", "alert"}
    assert sorted(d.service_name for _, d in decisions if d.action == "alert") == sorted(SERVICES)
    [(_, web_alert)] = [(e, d) for e, d in web if d.action == "alert"]
    assert web_alert.task_definition == synth.task_definition_arn("web", 1)


def test_bad_deployment_the_circuit_breaker_already_rolls_back_is_left_to_it_during_the_outage():
    td2 = synth.task_definition_arn("web", 2)
    events = synth.stable_revisions(["web"]) + [
        synth.deployment_event("SERVICE_DEPLOYMENT_FAILED", service="web", deployment="ecs-svc/2", at=START),
        *[synth.task_stopped("image_pull", service="web", task_definition=td2, deployment="ecs-svc/2", at=START + timedelta(seconds=30 * i))
          for i in range(1, 4)],
    ]
    [(_, decision)] = _feed(Detector(), events)
    assert decision.action == "rollback" and decision.via == "circuit_breaker"


def test_a_crashloop_that_lasts_is_alerted_again_with_what_was_tried():
    events = synth.stable_revisions(["core"]) + synth.dependency_outage(START, 150, services=["core"], tasks=1)
    decisions = [d for _, d in _feed(Detector(DetectorConfig(escalate_after_seconds=3600)), events)]
    assert [d.action for d in decisions] == ["alert", "escalate", "escalate"]
    first, second, third = decisions
    assert first.alerts == 1 and second.alerts == 2 and third.alerts == 3
    assert second.episode_started_at == first.episode_started_at
    assert second.crashes_since_start > 35 and "still crash-loops 6" in second.reason
    assert any(t.startswith("left running") for t in second.tried)
    assert "alerted 1 time(s), last at " + first.decided_at in second.tried
    assert "alerted 2 time(s)" in third.tried[-1]
    assert all(d.via == "none" for d in decisions)


def test_a_new_crashloop_after_an_hour_of_quiet_is_a_new_alert():
    events = (synth.stable_revisions(["web"]) + synth.dependency_outage(START, 10, services=["web"])
              + synth.dependency_outage(START + timedelta(minutes=90), 10, services=["web"]))
    assert [d.action for _, d in _feed(Detector(), events)] == ["alert", "alert"]


def test_an_alert_not_sent_yet_is_returned_again_so_a_retry_sends_it():
    detector = Detector(store=MemoryStore())
    events = synth.stable_revisions(["core"]) + synth.dependency_outage(START, 10, services=["core"], tasks=1)
    decisions = [detector.process(e) for e in events]
    first = next(i for i, d in enumerate(decisions) if d is not None)
    assert decisions[first].action == "alert"
    assert all(d is not None and d.event_id == decisions[first].event_id for d in decisions[first + 1:])


def test_the_alert_is_decided_once_between_two_detectors_sharing_the_state():
    """Two Lambda invocations on one table: the episode's compare-and-set lets only one alert."""
    store = MemoryStore()
    a, b = Detector(store=store), Detector(store=store)
    events = synth.stable_revisions(["web"]) + synth.dependency_outage(START, 10, services=["web"], tasks=2)
    decisions = [(a if i % 2 else b).replay(e) for i, e in enumerate(events)]
    assert [d.action for d in decisions if d] == ["alert"]


def test_zero_task_seconds_counts_a_stop_to_the_end():
    """The site-down measure of the benchmark and the tests: a scale_to_zero (earlier versions) holds the
    service down to the end (nobody resumes in a replay), counted only after the outage ended."""
    from tootstack.crashloop.detector import Decision

    def d(action, service="core"):
        return Decision(service=f"tootstack/{service}", cluster="tootstack", service_name=service, action=action, reason="", task_definition="")

    assert synth.zero_task_seconds([(100, d("scale_to_zero"))], "core", after=400, until=1000) == 600
    assert synth.zero_task_seconds([(700, d("scale_to_zero"))], "core", after=400, until=1000) == 300
    assert synth.zero_task_seconds([(100, d("alert")), (100, d("scale_to_zero", "web"))], "core", after=0, until=1000) == 0



def test_a_crashloop_soon_after_a_load_spike_alert_is_alerted_at_once():
    """A load spike fails 3 health checks (alerted, left running); 25 minutes later the database goes:
    its crashloop is a new alert on its 3rd crash, not folded into the spike's episode for an hour."""
    spike = [synth.task_stopped("elb_health_check", service="web", task_definition=synth.task_definition_arn("web", 1),
                                deployment="ecs-svc/1", at=START + timedelta(seconds=60 * i)) for i in range(3)]
    outage_start = START + timedelta(minutes=27)
    outage = synth.dependency_outage(outage_start, 10, services=["web"], tasks=1)
    decisions = _feed(Detector(), synth.stable_revisions(["web"]) + spike + outage)
    assert [d.action for _, d in decisions] == ["alert", "alert"]
    (_, first), (event, second) = decisions
    assert event["id"] == outage[2]["id"] and second.episode_started_at > first.episode_started_at


def test_a_backed_off_loop_is_escalated_not_dropped():
    """Tasks that never reach RUNNING: ECS spaces launches out (up to 27 min, service throttle logic,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-throttle-logic.html). Gaps longer
    than the window but shorter than the escalation period keep the episode going: escalated hourly."""
    td = synth.task_definition_arn("web", 1)
    gaps = [0, 60, 60, 300, 600, 1200, 1620, 1620, 1620, 1620]
    times, t = [], 0
    for gap in gaps:
        t += gap
        times.append(t)
    crashes = [synth.task_stopped("secrets", service="web", task_definition=td, deployment="ecs-svc/1", at=START + timedelta(seconds=s))
               for s in times]
    decisions = [d for _, d in _feed(Detector(), synth.stable_revisions(["web"]) + crashes)]
    assert [d.action for d in decisions] == ["alert", "escalate", "escalate"]

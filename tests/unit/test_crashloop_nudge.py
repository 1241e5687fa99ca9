"""Nudges: a stable revision whose tasks never reach RUNNING (TaskFailedToStart: secrets, image or ENI
unreachable during a dependency outage) is forced to a new deployment at backed-off intervals, so the
service is back within 15 minutes of the dependency recovering instead of waiting out ECS's launch
back-off (up to 27 minutes: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-throttle-logic.html).
"""

import json
import random
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tootstack_dev import cli
from tootstack_dev.crashloop import synth
from tootstack.crashloop.detector import NUDGE_INTERVALS, Detector, DetectorConfig, mark_applied
from tootstack.crashloop.store import MemoryStore

E = synth.EPOCH
START = E + timedelta(minutes=30)
CORE1 = synth.task_definition_arn("core", 1)


def _epoch(iso):
    return synth._epoch_of(iso)


def _secrets_loop(detector, service="core", n=3, at=START, every=60):
    decisions = []
    for e in synth.stable_revisions([service]):
        detector.replay(e)
    for i in range(n):
        d = detector.replay(synth.task_stopped("secrets", service=service, task_definition=synth.task_definition_arn(service, 1),
                                               deployment="ecs-svc/1", container=service, at=at + timedelta(seconds=every * i)))
        if d is not None:
            decisions.append(d)
    return decisions


def test_the_alert_of_a_stable_revision_that_fails_to_start_schedules_a_nudge():
    [alert] = _secrets_loop(detector := Detector())
    assert alert.action == "alert" and alert.nudge_seq == 1 and alert.nudge_episode == alert.episode_started_at
    assert _epoch(alert.nudge_at) == _epoch(alert.decided_at) + NUDGE_INTERVALS[0]
    assert any(t.startswith("nudges scheduled") for t in alert.tried)
    [(due, key, seq, episode)] = detector.due_nudges(_epoch(alert.nudge_at))
    assert (key, seq, episode) == ("tootstack/core", 1, alert.episode_started_at)


def test_a_loop_of_tasks_that_did_start_is_not_nudged():
    """Health-check failures and exits after RUNNING are not throttled by ECS (same doc): nothing to nudge."""
    events = synth.stable_revisions() + synth.dependency_outage(START, 20, rng=random.Random(3))
    detector = Detector()
    decisions = [d for d in map(detector.replay, events) if d is not None]
    assert {d.action for d in decisions} == {"alert"} and all(d.nudge_seq == 0 for d in decisions)
    assert detector.due_nudges(START.timestamp() + 24 * 3600) == []


def test_nudges_are_backed_off_5_10_15_then_every_15_minutes_and_stop_when_the_episode_ends():
    detector = Detector()
    [alert] = _secrets_loop(detector)
    fired = detector.run_due_nudges(_epoch(alert.decided_at) + 4 * 3600)
    forced = [d for d in fired if d.action == "nudge"]
    times = [_epoch(alert.decided_at)] + [_epoch(d.decided_at) for d in forced]
    gaps = [round((b - a) / 60) for a, b in zip(times, times[1:])]
    assert gaps[:4] == [5, 10, 15, 15] and max(gaps) == 15
    assert [d.nudges for d in forced] == list(range(1, len(forced) + 1))
    assert fired[-1].action == "nudge_stopped" and "episode ended" in fired[-1].reason
    assert detector.due_nudges(_epoch(alert.decided_at) + 24 * 3600) == []   # nothing scheduled after it stopped
    assert all(d.event["started_by"]["id"] == alert.event["id"] for d in fired)


def test_nudging_stops_once_a_task_of_the_revision_reaches_running():
    detector = Detector()
    [alert] = _secrets_loop(detector)
    [first] = detector.run_due_nudges(_epoch(alert.nudge_at))
    assert first.action == "nudge"
    detector.replay(synth.task_running(service="core", task_definition=CORE1, at=START + timedelta(minutes=9)))
    [stopped] = detector.run_due_nudges(_epoch(first.nudge_at))
    assert stopped.action == "nudge_stopped" and "RUNNING" in stopped.reason and stopped.nudges == 1
    assert detector.due_nudges(START.timestamp() + 24 * 3600) == []


def test_nudging_stops_when_the_service_has_running_tasks():
    """The Lambda passes running=True when DescribeServices shows running tasks of the revision."""
    detector = Detector()
    [alert] = _secrets_loop(detector)
    d = detector.nudge("tootstack/core", 1, alert.episode_started_at, _epoch(alert.nudge_at), running=True)
    assert d.action == "nudge_stopped"


def test_no_nudge_while_a_deployment_or_rollback_is_in_progress():
    """core:1 fails to start (secrets); someone deploys core:2, which crashes and is rolled back to :1. While
    the deployment/rollback is in progress the nudge is deferred (no forced deployment), then resumes."""
    detector = Detector()
    [alert] = _secrets_loop(detector)
    td2 = synth.task_definition_arn("core", 2)
    t = START + timedelta(minutes=3)
    detector.replay(synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service="core", deployment="ecs-svc/2", at=t))
    rollback = [d for d in (detector.replay(synth.task_stopped("exit_nonzero", service="core", task_definition=td2, deployment="ecs-svc/2",
                                                               container="core", at=t + timedelta(seconds=20 * (i + 1))))
                            for i in range(3)) if d is not None]
    assert [d.action for d in rollback] == ["rollback"]
    [deferred] = detector.run_due_nudges(_epoch(alert.nudge_at))
    assert deferred.action == "nudge_deferred" and deferred.nudges == 0
    # the rollback completes (core:1 is stable again): the next step forces a deployment
    detector.replay(synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", service="core", deployment="ecs-svc/3",
                                           at=START + timedelta(minutes=9)))
    detector.store.map_deployment("tootstack/core", "ecs-svc/3", CORE1)
    [nudge] = detector.run_due_nudges(_epoch(deferred.nudge_at))
    assert nudge.action == "nudge" and nudge.nudges == 1


def test_a_chain_is_not_deferred_by_its_own_forced_deployment_nor_a_rollback_to_its_revision():
    """UpdateService(forceNewDeployment) starts a deployment that ECS announces SERVICE_DEPLOYMENT_IN_PROGRESS
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/ecs_service_deployment_events.html); the
    nudge records its id (the PRIMARY deployment of the UpdateService response), so the next step still
    forces a deployment. A deployment of the chain's own revision (the circuit breaker rolling a failed forced
    deployment back to it) does not defer it either."""
    detector = Detector()
    [alert] = _secrets_loop(detector)
    forced = "ecs-svc/2000000000000000001"

    def deploy(nudge):
        detector.replay(synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service="core", deployment=forced,
                                               at=START + timedelta(minutes=8)))
        return forced

    [first] = detector.run_due_nudges(_epoch(alert.nudge_at), deploy=deploy)
    assert first.action == "nudge"
    assert detector.store.services["tootstack/core"].deployment.deployment_id == forced
    [second] = detector.run_due_nudges(_epoch(first.nudge_at))
    assert second.action == "nudge" and second.nudges == 2
    # the circuit breaker rolls back to core:1 (a deployment whose tasks run core:1): not someone else's deployment
    rollback = "ecs-svc/2000000000000000002"
    detector.replay(synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service="core", deployment=rollback,
                                           at=START + timedelta(minutes=30),
                                           reason="ECS deployment circuit breaker: rolling back to deploymentId " + forced))
    detector.replay(synth.task_stopped("secrets", service="core", task_definition=CORE1, deployment=rollback, container="core",
                                       at=START + timedelta(minutes=31)))
    [third] = detector.run_due_nudges(_epoch(second.nudge_at))
    assert third.action == "nudge" and third.nudges == 3


def test_a_nudge_records_the_deployment_it_started():
    """The Lambda path: apply_nudge keeps the PRIMARY deployment id of the UpdateService response (ECS API
    reference, UpdateService: the response's service.deployments, status PRIMARY is the newest)."""
    from tootstack.crashloop.actions import Halter

    class Ecs:
        def update_service(self, **kwargs):
            return {"service": {"deployments": [{"id": "ecs-svc/9", "status": "PRIMARY"}, {"id": "ecs-svc/1", "status": "ACTIVE"}]}}

    detector = Detector()
    [alert] = _secrets_loop(detector)
    nudge = detector.nudge("tootstack/core", 1, alert.episode_started_at, _epoch(alert.nudge_at))
    applied = Halter(detector.store, ecs=Ecs(), autoscaling=object()).apply_nudge(nudge)
    assert applied["deployment_id"] == "ecs-svc/9"
    episode = detector.store.services["tootstack/core"].episode
    assert episode["nudge_deployment"] == "ecs-svc/9" and episode["nudge_pending"] is None


def test_an_escalation_restarts_a_chain_whose_step_failed_to_apply():
    """A step decided but never applied (the forced deployment failed and the Lambda's async retries ran
    out, so the next step was never scheduled) left the chain waiting forever: the escalation of the still
    failing loop restarts it."""
    detector = Detector()
    [alert] = _secrets_loop(detector)
    lost = detector.nudge("tootstack/core", 1, alert.episode_started_at, _epoch(alert.nudge_at))
    assert lost.action == "nudge"                                     # decided; its apply never succeeds
    decisions = _secrets_loop(detector, n=70, at=START + timedelta(minutes=3))
    escalate = next(d for d in decisions if d.action == "escalate")
    assert escalate.nudge_seq == lost.nudge_seq + 1 and _epoch(escalate.nudge_at) == _epoch(escalate.decided_at) + NUDGE_INTERVALS[0]
    mark_applied(detector.store, escalate)
    [(due, _, seq, _)] = detector.due_nudges(_epoch(escalate.nudge_at))
    assert seq == escalate.nudge_seq
    assert detector.nudge("tootstack/core", lost.nudge_seq, alert.episode_started_at, due) is None   # the broken chain's step
    assert detector.nudge("tootstack/core", seq, alert.episode_started_at, due).action == "nudge"


def test_an_escalation_leaves_a_chain_on_time_alone():
    detector = Detector()
    [alert] = _secrets_loop(detector)
    decisions = []
    for i in range(70):   # the scheduler's steps run on the events' clock: none is overdue when the loop escalates
        at = START + timedelta(minutes=3 + i)
        detector.run_due_nudges(at.timestamp())
        decisions.append(detector.replay(synth.task_stopped("secrets", service="core", task_definition=CORE1, deployment="ecs-svc/1",
                                                            container="core", at=at)))
    escalate = next(d for d in decisions if d is not None and d.action == "escalate")
    assert escalate.nudge_seq == 0 and len(detector.due_nudges(1e12)) == 1   # the one chain, still running


def test_a_bad_deployment_that_fails_to_start_is_rolled_back_not_nudged():
    detector = Detector()
    _secrets_loop(detector, n=0)
    td2 = synth.task_definition_arn("core", 2)
    detector.replay(synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service="core", deployment="ecs-svc/2", at=START))
    decisions = [d for d in (detector.replay(synth.task_stopped("secrets", service="core", task_definition=td2, deployment="ecs-svc/2",
                                                                container="core", at=START + timedelta(seconds=30 * (i + 1))))
                             for i in range(5)) if d is not None]
    assert [d.action for d in decisions] == ["rollback"] and decisions[0].nudge_seq == 0
    assert detector.due_nudges(START.timestamp() + 24 * 3600) == []


def test_a_nudge_step_is_idempotent():
    """EventBridge Scheduler delivers at least once: a duplicate of a step changes nothing; a step decided
    but not applied (the ECS call failed) is returned again so the retry applies it; two detectors sharing
    the state nudge once."""
    store = MemoryStore()
    a, b = Detector(store=store), Detector(store=store)
    [alert] = _secrets_loop(a)
    now = _epoch(alert.nudge_at)
    first = a.nudge("tootstack/core", 1, alert.episode_started_at, now)
    assert first.action == "nudge"
    again = b.nudge("tootstack/core", 1, alert.episode_started_at, now)            # retry before it was applied
    assert again is not None and again.as_dict() == first.as_dict()
    mark_applied(store, first)
    assert b.nudge("tootstack/core", 1, alert.episode_started_at, now) is None      # duplicate after it was applied
    assert a.nudge("tootstack/core", 7, alert.episode_started_at, now) is None      # unknown step
    assert a.nudge("tootstack/core", 2, "2020-01-01T00:00:00Z", now) is None       # another episode's step
    assert store.services["tootstack/core"].episode["nudge"]["done"] == 1


@pytest.mark.parametrize("minutes", [6, 30, 60, 90, 120])
def test_the_service_is_back_within_15_minutes_of_the_dependency_recovering(minutes):
    """ECS's throttle alone (modelled: doubling from 1 min, the documented 27-min cap) leaves the service
    down up to 27 min after the outage; with nudges a task is launched at least every 15 min."""
    detector = Detector()
    for e in synth.stable_revisions(["core"]):
        detector.replay(e)
    result = synth.throttled_outage(detector, START, minutes)
    assert result["down_after_end"] <= 15 * 60
    assert not any(d.action in ("rollback", "scale_to_zero") for d in result["decisions"])


@pytest.mark.parametrize("minutes", [60, 120])
def test_a_step_due_at_the_second_of_a_throttled_launch_forces_that_launch(minutes):
    """Crash times have milliseconds; a step's schedule (at(yyyy-mm-ddThh:mm:ss)) and its records have whole
    seconds. A step due a fraction after the second it is recorded at missed the throttled launch of that
    second (4 back-offs after a nudge: 60+120+240+480 s = 900 s), fired later and moved the trace's clock
    back: crashes out of time order, nudges out of step, and a second alert of the same loop."""
    detector = Detector()
    for e in synth.stable_revisions(["core"]):
        detector.replay(e)
    result = synth.throttled_outage(detector, START + timedelta(milliseconds=250), minutes)
    times = [_epoch(e["time"]) for e in result["events"]]
    assert times == sorted(times)
    assert [d.action for d in result["decisions"]].count("alert") == 1
    forced = [_epoch(d.decided_at) for d in result["decisions"] if d.action == "nudge"]
    assert [round(b - a) for a, b in zip(forced, forced[1:])][2:] == [900] * (len(forced) - 3)


def test_control_without_nudges_ecs_throttle_leaves_the_site_down_longer_than_15_minutes():
    """The same 60-min outage with nudging off: the next throttled launch comes 25 min after the end."""
    detector = Detector(DetectorConfig(nudge=False))
    for e in synth.stable_revisions(["core"]):
        detector.replay(e)
    assert synth.throttled_outage(detector, START, 60)["down_after_end"] == 25 * 60


def test_throttle_delay_is_capped_at_the_documented_27_minutes():
    """https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-throttle-logic.html:
    "up to a maximum of 27 minutes between attempts"."""
    assert [synth.throttle_delay(k) / 60 for k in range(1, 8)] == [1, 2, 4, 8, 16, 27, 27]


def test_replay_prints_each_nudge_with_its_triggering_event(tmp_path, capsys):
    events = synth.stable_revisions(["core"]) + synth.dependency_outage(START, 20, services=["core"], tasks=1, kind="secrets")
    events.append(synth.task_stopped("spot_interruption", service="web", at=START + timedelta(minutes=40)))   # the clock moves on
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert cli.main(["crashloop", "replay", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # alert by the 3rd crash (~3.5 min in); nudges 5, 15 and 30 min after it, all before the last event (40 min)
    assert [o["action"] for o in out] == ["alert", "nudge", "nudge", "nudge"]
    alert, first, second, _ = out
    assert alert["nudge_at"] == first["at"] and first["next_nudge_at"] == second["at"]
    assert first["event_index"] is None and first["event"]["detail_type"] == "Crashloop Nudge"
    assert first["event"]["started_by"] == alert["event"] and first["force_new_deployment"] is True
    assert alert["event"]["id"] == events[alert["event_index"]]["id"]


def test_the_nudge_resources_are_least_privilege():
    """The scheduler's role may only invoke the detector, assumed only by this account's schedules of the
    nudge group; the detector may create schedules only in that group and pass only that role, only to
    EventBridge Scheduler (iam:PassedToService)."""
    from tootstack_dev.local.template import load_template, project_root

    resources = load_template(project_root() / "template.yaml")["Resources"]
    [invoke] = resources["CrashloopNudgeSchedulerPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert invoke == {"Sid": "InvokeDetector", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                      "Resource": {"Fn::GetAtt": ["CrashloopDetectorFunction", "Arn"]}}
    role = resources["CrashloopNudgeSchedulerRole"]["Properties"]
    assert "Policies" not in role and "ManagedPolicyArns" not in role
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert "${CrashloopNudgeScheduleGroup}" in trust["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    detector = resources["CrashloopDetectorFunction"]["Properties"]
    statements = {s.get("Sid"): s for s in detector["Policies"][0]["Statement"]}
    assert statements["ScheduleNudges"]["Action"] == "scheduler:CreateSchedule"
    assert statements["ScheduleNudges"]["Resource"]["Fn::Sub"].endswith("schedule/${CrashloopNudgeScheduleGroup}/crashloop-nudge-*")
    passrole = statements["PassNudgeSchedulerRole"]
    assert passrole["Resource"] == {"Fn::GetAtt": ["CrashloopNudgeSchedulerRole", "Arn"]}
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    env = detector["Environment"]["Variables"]
    assert env["NUDGE_SCHEDULE_GROUP"] == {"Ref": "CrashloopNudgeScheduleGroup"}
    assert env["NUDGE_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["CrashloopNudgeSchedulerRole", "Arn"]}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(minutes=st.floats(8, 40), tasks=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
@example(minutes=11.2265625, tasks=1, seed=91706)
def test_an_outage_of_failed_starts_across_every_service_nudges_each_and_stops_none(minutes, tasks, seed):
    """Secrets unreachable for several minutes: every site service on its stable revision is alerted by
    its 3rd crash with a nudge chain; nothing is rolled back or stopped; each chain forces deployments at
    most 15 min apart while it lasts and stops once a task of the revision runs."""
    rng = random.Random(seed)
    events = synth.stable_revisions() + synth.dependency_outage(START, minutes, tasks=tasks, rng=rng, kind="secrets")
    detector = Detector()
    decisions = [d for d in map(detector.replay, events) if d is not None]
    assert sorted(d.service_name for d in decisions) == sorted(synth.OUTAGE_STOPS)
    assert all(d.action == "alert" and d.nudge_seq == 1 for d in decisions)
    running_at = START + timedelta(minutes=minutes + 20)
    fired = detector.run_due_nudges(running_at.timestamp())    # the scheduler's steps until then
    for service in synth.OUTAGE_STOPS:   # the dependency is back: a forced launch runs
        detector.replay(synth.task_running(service=service, task_definition=synth.task_definition_arn(service, 1), at=running_at))
    later = detector.run_due_nudges(START.timestamp() + 6 * 3600)
    for service in synth.OUTAGE_STOPS:
        alert = next(d for d in decisions if d.service_name == service)
        mine = [d for d in fired if d.service_name == service]
        assert mine and all(d.action == "nudge" for d in mine)
        times = [_epoch(alert.decided_at)] + [_epoch(d.decided_at) for d in mine]
        assert all(b - a <= 15 * 60 for a, b in zip(times, times[1:])) and running_at.timestamp() - times[-1] <= 15 * 60
        [stop] = [d for d in later if d.service_name == service]
        assert stop.action == "nudge_stopped" and "RUNNING" in stop.reason
    assert not any(d.action in ("rollback", "scale_to_zero") for d in decisions + fired)

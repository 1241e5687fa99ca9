"""The crashloop detector: ECS events in, at most one decision per event out. Pure: all state goes
through a Store, nothing here calls ECS or SNS (see actions.py for what a decision does).

Rule: a service crash-loops when `threshold` crashes (classify.CRASH_KINDS) of the same task definition
fall within `window_seconds` of each other, judged on the tasks' own stoppedAt times. The test looks at
the whole set of stored crashes, so the outcome does not depend on delivery order, and crashes are keyed
by task ARN, so duplicates change nothing.

Policy: stop only what a deployment broke; never stop a stable revision.
  rollback   a bad deployment: a stable task definition is known (recorded when a deployment COMPLETED)
             and it is not the one crashing. UpdateService back to it; if the ECS circuit breaker is
             already rolling back (deployment FAILED, or IN_PROGRESS with a rollback reason), let it act
             (`via` "circuit_breaker", no UpdateService). The service is marked halted.
  alert      a stable revision crash-loops (the stable definition itself, the rolled-back-to definition,
             or a definition with no deployment to blame): the cause is outside the image (a dependency
             outage, an expired credential, a load spike), so the service is LEFT RUNNING and ECS keeps
             replacing its tasks (ECS's service throttle logic paces launches that never reach RUNNING).
             Once the cause is gone the next task serves; nothing needs resuming. Alerted with the evidence.
  escalate   the same stable-revision crashloop still crashes `escalate_after_seconds` after the last
             alert: alerted again with what was tried and how many crashes since it began.
An alerted crashloop (an "episode") ends when its task definition has not crashed for
`escalate_after_seconds`, when another definition becomes stable, or when an operator resumes the
service; a loop that paused longer than the window after the alert and reaches the threshold again
(a real crashloop after a load spike's alert) is a new episode, alerted at once.
Nudges: when a stable revision's tasks never reach RUNNING (TaskFailedToStart: secrets, image or ENI
unreachable during a dependency outage), ECS's service throttle logic spaces its launches out up to
27 minutes apart, so the site could stay down that long after the cause is gone. The alert (or an
escalation) of such a crashloop starts a nudge chain (an escalation also restarts a chain that broke: a
step overdue by more than a step's interval, because it failed to apply and scheduled nothing): at NUDGE_INTERVALS after it (5, 10, 15 min, then
every 15 min) the service is forced to a new deployment (which ECS starts at once), until a task of the
revision reaches RUNNING, the service has running tasks, the episode ends, or another definition becomes
stable. A nudge is deferred (not sent) while someone else's deployment or a rollback is in progress (the
deployment the chain's last nudge started, and one of the chain's own revision, do not count). Each nudge is one
step `seq` of the episode's chain (compare-and-set), so a duplicate or stale invocation changes nothing.
The detector never scales a service to zero. A `scale_to_zero` halt recorded by an earlier version and
not applied yet is never carried out: it is dropped (logged) when the service's next task event arrives;
`resume` still restores the desired count of one an earlier version applied.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tootstack.crashloop.classify import Stop, classify
from tootstack.crashloop.clock import epoch, iso
from tootstack.crashloop.keys import cluster_name, parse_service_arn, service_key
from tootstack.crashloop.models import EcsDeploymentStateChangeEvent, EcsEvent, EcsTaskStateChangeEvent, parse_event
from tootstack.crashloop.store import Crash, Deployment, MemoryStore, Store

CRASH_TTL_GRACE_SECONDS = 24 * 3600
DEFAULT_ESCALATE_SECONDS = 3600.0
logger = logging.getLogger(__name__)

# (cluster, service, deployment id) -> task definition ARN, or None when it cannot be known
DeploymentResolver = Callable[[str, str, str], "str | None"]


@dataclass(frozen=True)
class DetectorConfig:
    threshold: int = 3
    window_seconds: float = 600.0
    cluster: str | None = None        # only events of this cluster (name or ARN); None: every cluster
    # a stable-revision crashloop still going this long is alerted again; None: an hour, or the crash window
    # when that is longer (the template allows a window of up to a day)
    escalate_after_seconds: float | None = None
    nudge: bool = True                       # force new deployments of a stable revision whose tasks fail to start

    def __post_init__(self) -> None:
        from tootstack.errors import InvalidInput

        if self.escalate_after_seconds is None:
            object.__setattr__(self, "escalate_after_seconds", max(DEFAULT_ESCALATE_SECONDS, float(self.window_seconds)))
        if self.threshold < 1:
            raise InvalidInput(f"crash threshold must be at least 1, got {self.threshold}")
        if self.window_seconds <= 0:
            raise InvalidInput(f"crash window must be positive, got {self.window_seconds} s")
        if self.escalate_after_seconds < self.window_seconds:
            raise InvalidInput(
                f"escalation period ({self.escalate_after_seconds} s) must be at least the crash window ({self.window_seconds} s)"
            )


@dataclass
class Decision:
    service: str                       # "<cluster>/<service>"
    cluster: str
    service_name: str
    action: str                        # "rollback" | "alert" | "escalate" ("scale_to_zero": earlier versions only)
    reason: str
    task_definition: str               # the crashing one
    target_task_definition: str | None = None   # rollback target
    via: str = "ecs_api"               # "ecs_api" | "circuit_breaker" | "none" (alert only: nothing to call on ECS)
    crash_count: int = 0
    threshold: int = 0
    window_seconds: float = 0.0
    event_id: str = ""
    decided_at: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False
    # alert / escalate: the episode (a stable revision's crashloop, left running)
    episode_started_at: str = ""       # first crash of the episode
    crashes_since_start: int = 0       # crashes of the definition since then (as far as stored: 24 h)
    alerts: int = 0                    # alerts of this episode including this one
    tried: list[str] = field(default_factory=list)   # what was done so far (rollback, left running, alerts)
    event: dict[str, Any] = field(default_factory=dict)   # the triggering event (id, time, task, stop kind)
    # nudges (a stable revision whose tasks fail to start): the chain step this decision schedules or is
    nudge_seq: int = 0                 # alert/escalate: the first nudge it schedules (0: none); nudge*: its step
    nudge_at: str = ""                 # when that (or, for a nudge*, the next) nudge is due
    nudge_episode: str = ""            # the episode the chain belongs to (its first crash, ISO)
    nudges: int = 0                    # forced deployments so far in the chain, this one included

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Decision":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def window_reached(times: list[float], threshold: int, window_seconds: float) -> tuple[bool, int]:
    """(reached, largest count within any window). Order-independent: a function of the set of times."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        end = bisect.bisect_right(ordered, start + window_seconds, lo=i)
        best = max(best, end - i)
    return best >= threshold, best


class Detector:
    def __init__(
        self,
        config: DetectorConfig | None = None,
        store: Store | None = None,
        resolve_deployment: DeploymentResolver | None = None,
    ) -> None:
        self.config = config or DetectorConfig()
        self.store: Store = store if store is not None else MemoryStore()
        self.resolve_deployment = resolve_deployment
        self._cluster = cluster_name(self.config.cluster) if self.config.cluster else None
        self.last_stop: Stop | None = None   # the classification of the last task event (for metrics/logs)

    # ------------------------------------------------------------------------------------------
    def process(self, raw: Any) -> Decision | None:
        """Feed one event (raw dict/JSON or a parsed model). Returns a Decision when the service must be
        halted now (or a halt was decided but not applied yet: it is returned again so a retry applies it)."""
        event: EcsEvent = raw if isinstance(raw, (EcsTaskStateChangeEvent, EcsDeploymentStateChangeEvent)) else parse_event(raw)
        self.last_stop = None
        if isinstance(event, EcsDeploymentStateChangeEvent):
            self._deployment(event)
            return None
        return self._task(event)

    def replay(self, raw: Any) -> Decision | None:
        """`process` with nothing to apply (the CLI replay, the benchmark, tests): a decision is marked
        applied at once, so it is decided once and not returned again by later events."""
        decision = self.process(raw)
        if decision is not None:
            mark_applied(self.store, decision)
        return decision

    # ------------------------------------------------------------------------------------------
    def _deployment(self, event: EcsDeploymentStateChangeEvent) -> None:
        cluster, service = parse_service_arn(event.service_arn, self._cluster)
        if self._cluster and cluster != self._cluster:
            return
        key = service_key(cluster, service)
        d = event.detail
        updated = epoch(d.updatedAt)
        self.store.record_deployment(key, Deployment(d.deploymentId, d.eventName, d.reason or "", updated))
        if d.eventName != "SERVICE_DEPLOYMENT_COMPLETED":
            return
        state = self.store.get_service(key)
        task_definition = state.deployment_map.get(d.deploymentId)
        if task_definition is None and self.resolve_deployment is not None:
            task_definition = self.resolve_deployment(cluster, service, d.deploymentId)
            if task_definition:
                self.store.map_deployment(key, d.deploymentId, task_definition)
        if task_definition:
            self.store.set_stable(key, task_definition, updated)
        else:
            self.store.record_completed(key, d.deploymentId, updated)

    def _task(self, event: EcsTaskStateChangeEvent) -> Decision | None:
        task = event.detail
        service = task.service_name
        cluster = cluster_name(task.clusterArn)
        if self._cluster and cluster != self._cluster:
            return None
        if service is None:
            self.last_stop = classify(task)
            return None
        key = service_key(cluster, service)
        state = self.store.get_service(key)
        started_by = task.startedBy if task.startedBy and task.startedBy.startswith("ecs-svc/") else None
        if started_by and started_by not in state.deployment_map:
            self.store.map_deployment(key, started_by, task.taskDefinitionArn)
            if started_by in state.pending_completed:
                self.store.set_stable(key, task.taskDefinitionArn, state.pending_completed[started_by])
            state = self.store.get_service(key)

        if state.halt is not None and not state.halt.get("applied"):
            if state.halt.get("action") != "scale_to_zero":
                return Decision.from_dict(state.halt)   # decided earlier, actions not applied yet: retry them
            _drop_old_scale_to_zero(self.store, key, state.halt)
            state = self.store.get_service(key)
        if state.episode is not None and state.episode.get("pending"):
            return Decision.from_dict(state.episode["pending"])   # an alert decided earlier, not sent yet

        if task.lastStatus == "RUNNING":
            # a task of a nudged revision started: the cause is gone, the chain stops at its next step
            episode = state.episode
            if episode and episode.get("nudge") and episode.get("task_definition") == task.taskDefinitionArn:
                self.store.update_episode(key, {"running_at": epoch(task.updatedAt or event.time)})
            return None
        stop = classify(task, state.deployment.deployment_id if state.deployment else None)
        self.last_stop = stop
        if not stop.is_crash:
            return None
        stopped_at = epoch(task.stoppedAt or event.time)
        if stopped_at <= state.resumed_at:
            return None                                   # from before the operator resumed the service
        crash = Crash(task.taskArn, task.taskDefinitionArn, stopped_at, stop.kind, stop.reason, stop.exit_codes, event.id)
        self.store.add_crash(key, crash, stopped_at + self.config.window_seconds + CRASH_TTL_GRACE_SECONDS)
        crashes = [c for c in self.store.list_crashes(key, task.taskDefinitionArn) if c.stopped_at > state.resumed_at]
        reached, count = window_reached([c.stopped_at for c in crashes], self.config.threshold, self.config.window_seconds)
        if not reached:
            return None
        trigger = {
            "id": event.id, "time": iso(epoch(event.time)), "detail_type": event.detail_type,
            "task_id": task.taskArn.rsplit("/", 1)[-1], "stop_kind": stop.kind, "stop_code": task.stopCode,
            "stopped_at": iso(stopped_at),
        }
        decision = self._decide(cluster, service, key, task.taskDefinitionArn, state, crashes, count, crash, trigger)
        if decision is None or decision.action in EPISODE_ACTIONS:
            return decision                               # an episode decision is stored by _episode
        if not self.store.put_halt(key, decision.as_dict()):
            return None                                   # someone else halted it first
        return decision

    def _decide(self, cluster, service, key, task_definition, state, crashes, count, crash, trigger) -> Decision | None:
        cfg = self.config
        evidence = [c.as_evidence() for c in sorted(crashes, key=lambda c: (c.stopped_at, c.task_arn))][-max(cfg.threshold, 10):]
        base = dict(
            service=key, cluster=cluster, service_name=service, task_definition=task_definition,
            crash_count=count, threshold=cfg.threshold, window_seconds=cfg.window_seconds, evidence=evidence,
            event_id=trigger["id"], decided_at=trigger["time"], event=trigger,
        )
        what = f"{count} crashes of {_short(task_definition)} within {int(cfg.window_seconds)} s (threshold {cfg.threshold})"
        halt = state.halt
        if halt is not None:
            if halt.get("action") == "rollback" and task_definition == halt.get("target_task_definition"):
                tried = [f"rolled back from {_short(halt['task_definition'])} to {_short(task_definition)} at {halt.get('decided_at')}"]
                return self._episode(key, state, crashes, crash, base, what,
                                     "the rolled-back-to definition crashes too, so the deployment is not the cause", tried)
            return None                                   # already halted
        deployment = state.deployment
        breaker = deployment is not None and (
            deployment.event_name == "SERVICE_DEPLOYMENT_FAILED"
            or (deployment.event_name == "SERVICE_DEPLOYMENT_IN_PROGRESS" and "rollback" in deployment.reason.lower())
        )
        stable = state.stable_task_definition
        if stable and stable != task_definition:
            if breaker:
                return Decision(
                    action="rollback", via="circuit_breaker", target_task_definition=stable,
                    reason=f"{what}; the deployment circuit breaker is already rolling back to {_short(stable)}", **base,
                )
            return Decision(
                action="rollback", target_task_definition=stable,
                reason=f"{what}; rolling back to the last stable {_short(stable)}", **base,
            )
        why = ("it is the stable definition: nothing was deployed, the cause is outside the image" if stable
               else "no stable definition recorded to roll back to")
        return self._episode(key, state, crashes, crash, base, what, why, [])

    def _episode(self, key, state, crashes, crash, base, what, why, tried) -> Decision | None:
        """A stable revision crash-loops: alert once per episode, escalate every escalate_after_seconds.
        Only decisions write (compare-and-set on the episode's version)."""
        cfg = self.config
        t = crash.stopped_at
        task_definition = base["task_definition"]
        episode = state.episode
        same = (
            episode is not None
            and episode.get("task_definition") == task_definition
            and episode.get("started_epoch", 0.0) > state.resumed_at
        )
        # a new crashloop needs `threshold` crashes in a window around this one (not just somewhere in the
        # stored history: a lone crash after an hour of quiet is not a new crashloop)
        near = [c.stopped_at for c in crashes if abs(c.stopped_at - t) <= cfg.window_seconds]
        burst = window_reached(near, cfg.threshold, cfg.window_seconds)[0]
        if same:
            if t < episode["started_epoch"]:
                return None                               # a late copy of a crash from before the alert
            chain = sorted(c.stopped_at for c in crashes if episode["started_epoch"] <= c.stopped_at <= t)
            gaps = [(a, b) for a, b in zip(chain, chain[1:])]
            # the same loop while it never paused for escalate_after_seconds since the episode began; a loop
            # that paused longer than the window after the alert (e.g. a load spike's alert, then a real
            # crashloop) and now reaches the threshold again is a new one, alerted at once
            broken = any(b - a > cfg.escalate_after_seconds for a, b in gaps)
            restarted = burst and any(b - a > cfg.window_seconds for a, b in gaps if b > episode["last_alert_at"])
            same = not (broken or restarted)
        left = "left running: ECS keeps replacing its tasks (its service throttle logic paces launches that never reach RUNNING)"
        if not same:
            if not burst:
                return None
            in_window = sorted(c.stopped_at for c in crashes if t - cfg.window_seconds <= c.stopped_at <= t)
            started = in_window[0] if in_window else t
            decision = Decision(
                action="alert", via="none", reason=f"{what}; {why}; {left}",
                episode_started_at=iso(started), crashes_since_start=len(in_window), alerts=1,
                tried=[*tried, left], **base,
            )
            new = {"version": 1, "task_definition": task_definition, "started_epoch": started, "last_alert_at": t,
                   "alerts": 1, "tried": decision.tried, "quiet_seconds": cfg.escalate_after_seconds}
            if self._fails_to_start(crashes, crash):
                new["nudge"] = self._start_chain(decision, None, started, t)
            new["pending"] = decision.as_dict()
            return decision if self.store.put_episode(key, new, episode.get("version") if episode else None) else None
        if t - episode["last_alert_at"] < cfg.escalate_after_seconds:
            return None                                   # alerted already; not yet time to alert again
        since = [c for c in crashes if c.stopped_at >= episode["started_epoch"]]
        alerts = int(episode.get("alerts", 1)) + 1
        lasted = (t - episode["started_epoch"]) / 60
        tried = [*episode.get("tried", []), f"alerted {alerts - 1} time(s), last at {iso(episode['last_alert_at'])}"]
        decision = Decision(
            action="escalate", via="none",
            reason=(f"{_short(task_definition)} still crash-loops {lasted:.0f} min after its first crash "
                    f"({len(since)} crashes since); {why}"),
            episode_started_at=iso(episode["started_epoch"]), crashes_since_start=len(since), alerts=alerts,
            tried=tried, **base,
        )
        changes = {"version": int(episode["version"]) + 1, "last_alert_at": t, "alerts": alerts}
        chain = episode.get("nudge")
        # a chain whose step is overdue by more than a step's interval broke (its step failed to apply, e.g. the
        # Lambda's async retries ran out, so the next one was never scheduled): it is restarted like a stopped one
        overdue = bool(chain) and float(chain.get("due", t)) + NUDGE_INTERVALS[-1] < t
        if self._fails_to_start(crashes, crash) and (not chain or chain.get("stopped") or overdue):
            changes["nudge"] = self._start_chain(decision, chain, episode["started_epoch"], t)
            changes["nudge_pending"] = None   # the broken chain's undelivered step: its retry is stale now
        changes["pending"] = decision.as_dict()
        return decision if self.store.put_episode(key, {**episode, **changes}, episode["version"]) else None

    # --- nudges ---------------------------------------------------------------------------------
    def _fails_to_start(self, crashes, crash) -> bool:
        """The loop's tasks never reach RUNNING (the ones ECS's service throttle logic backs off)."""
        if not self.config.nudge:
            return False
        t = crash.stopped_at
        return crash.kind == "failed_to_start" or any(
            c.kind == "failed_to_start" for c in crashes if t - self.config.window_seconds <= c.stopped_at <= t)

    def _start_chain(self, decision: Decision, old: dict[str, Any] | None, started: float, t: float) -> dict[str, Any]:
        seq = int(old["seq"]) + 1 if old else 1
        due = _step_due(t, NUDGE_INTERVALS[0])
        decision.nudge_seq, decision.nudge_at, decision.nudge_episode = seq, iso(due), iso(started)
        decision.tried = [*decision.tried, f"nudges scheduled: a forced new deployment from {iso(due)}, backed off "
                          f"{', '.join(str(int(i // 60)) for i in NUDGE_INTERVALS)} min, then every {int(NUDGE_INTERVALS[-1] // 60)} min"]
        return {"seq": seq, "due": due, "done": int(old.get("done", 0)) if old else 0, "started_by": decision.event}

    def nudge(self, key: str, seq: int, episode: str, now: float, running: bool = False) -> Decision | None:
        """Step `seq` of the nudge chain of `key`'s episode `episode` (ISO of its first crash), due now.
        Returns a `nudge` (force a new deployment, then schedule decision.nudge_seq at decision.nudge_at),
        a `nudge_deferred` (a deployment or rollback is in progress: only schedule the next step), a
        `nudge_stopped` (nothing more to schedule), or None: a duplicate, stale or unknown step (nothing
        to do). `running`: the service has running tasks of the revision (the Lambda reads it from
        DescribeServices). A decided step not yet applied is returned again (a retry re-applies it)."""
        state = self.store.get_service(key)
        ep = state.episode
        if ep is None or iso(float(ep.get("started_epoch", 0))) != episode:
            return None
        pending = ep.get("nudge_pending")
        if pending and int(pending.get("nudge_seq", 0)) == seq + 1:
            return Decision.from_dict(pending)            # decided, not applied yet: apply it again
        chain = ep.get("nudge")
        if not chain or int(chain.get("seq", 0)) != seq or chain.get("stopped"):
            return None
        cfg = self.config
        td = ep["task_definition"]
        crashes = self.store.list_crashes(key, td)
        last = max((c.stopped_at for c in crashes), default=float(ep["started_epoch"]))
        started_by = chain.get("started_by") or {}
        base = dict(
            service=key, cluster=key.split("/", 1)[0], service_name=key.split("/", 1)[1], task_definition=td,
            threshold=cfg.threshold, window_seconds=cfg.window_seconds, decided_at=iso(now), nudge_episode=episode,
            episode_started_at=episode, alerts=int(ep.get("alerts", 1)),
            crash_count=len([c for c in crashes if c.stopped_at >= float(ep["started_epoch"])]),
            event={"id": f"nudge#{seq}", "time": iso(now), "detail_type": "Crashloop Nudge", "scheduled_at": iso(float(chain["due"])),
                   "started_by": started_by},
        )
        base["crashes_since_start"] = base["crash_count"]
        halt = state.halt or {}
        stop = None
        if running or float(ep["started_epoch"]) < float(ep.get("running_at", 0)) <= now:
            stop = "a task of the revision reached RUNNING"
        elif state.stable_task_definition and state.stable_task_definition != td and halt.get("target_task_definition") != td:
            stop = f"another definition is stable now ({_short(state.stable_task_definition)})"
        elif now - last > cfg.escalate_after_seconds:
            stop = f"the episode ended: no crash for {int(cfg.escalate_after_seconds // 60)} min"
        done = int(chain.get("done", 0))
        if stop:
            decision = Decision(action="nudge_stopped", via="none", reason=f"nudging stopped: {stop}", nudge_seq=seq,
                                nudges=done, **base)
            chain_next = {**chain, "seq": seq + 1, "stopped": stop}
        else:
            deployment = state.deployment
            rollback_open = halt.get("action") == "rollback" and (
                deployment is None or deployment.event_name != "SERVICE_DEPLOYMENT_COMPLETED"
                or deployment.updated_at < epoch(halt.get("decided_at", ""), default=0.0))
            in_progress = deployment is not None and deployment.event_name == "SERVICE_DEPLOYMENT_IN_PROGRESS"
            busy = (in_progress and not self._own_deployment(key, state, ep, deployment.deployment_id)) or rollback_open
            if busy:
                due = _step_due(now, NUDGE_INTERVALS[min(done, len(NUDGE_INTERVALS) - 1)])
                decision = Decision(action="nudge_deferred", via="none", nudge_seq=seq + 1, nudge_at=iso(due), nudges=done,
                                    reason="a deployment or rollback is in progress: no forced deployment now, next step later", **base)
                chain_next = {**chain, "seq": seq + 1, "due": due}
            else:
                due = _step_due(now, NUDGE_INTERVALS[min(done + 1, len(NUDGE_INTERVALS) - 1)])
                decision = Decision(
                    action="nudge", via="ecs_api", nudge_seq=seq + 1, nudge_at=iso(due), nudges=done + 1,
                    reason=(f"{_short(td)} fails to start (last crash {iso(last)}): forcing a new deployment so ECS "
                            f"launches a task now instead of after its launch back-off (nudge {done + 1})"), **base)
                chain_next = {**chain, "seq": seq + 1, "due": due, "done": done + 1}
        changes = {"version": int(ep["version"]) + 1, "nudge": chain_next,
                   "nudge_pending": decision.as_dict() if decision.action != "nudge_stopped" else None}
        return decision if self.store.put_episode(key, {**ep, **changes}, ep["version"]) else None

    def _own_deployment(self, key: str, state: Any, ep: dict[str, Any], deployment_id: str) -> bool:
        """The in-progress deployment is the chain's own: the one its last nudge started (UpdateService with
        forceNewDeployment starts a deployment, and ECS announces it IN_PROGRESS), or one of the chain's
        stable revision (e.g. the circuit breaker rolling a failed forced deployment back to it)."""
        if deployment_id == ep.get("nudge_deployment"):
            return True
        task_definition = state.deployment_map.get(deployment_id)
        if task_definition is None and self.resolve_deployment is not None:
            cluster, service = key.split("/", 1)
            task_definition = self.resolve_deployment(cluster, service, deployment_id)
            if task_definition:
                self.store.map_deployment(key, deployment_id, task_definition)
        return task_definition == ep["task_definition"]

    def due_nudges(self, until: float) -> list[tuple[float, str, int, str]]:
        """(due, service key, seq, episode) of every chain step due by `until` (in-memory store only: the
        replay and the benchmark run the scheduler's part on the events' own clock)."""
        due = []
        for key, state in getattr(self.store, "services", {}).items():
            ep = state.episode
            chain = (ep or {}).get("nudge")
            if chain and not chain.get("stopped") and float(chain["due"]) <= until:
                due.append((float(chain["due"]), key, int(chain["seq"]), iso(float(ep["started_epoch"]))))
        return sorted(due)

    def run_due_nudges(self, until: float, running: Callable[[str, float], bool] | None = None,
                       deploy: Callable[[Decision], "str | None"] | None = None) -> list[Decision]:
        """Fire every nudge step due by `until`, in time order, marking each applied (replay/benchmark).
        `deploy`: the stand-in for UpdateService of a `nudge`, returning the id of the deployment it started."""
        fired: list[Decision] = []
        while True:
            due = self.due_nudges(until)
            if not due:
                return fired
            at, key, seq, episode = due[0]
            decision = self.nudge(key, seq, episode, at, running(key, at) if running else False)
            if decision is None:
                return fired                              # cannot happen with one in-memory detector
            started = deploy(decision) if deploy is not None and decision.action == "nudge" else None
            mark_applied(self.store, decision, started)
            fired.append(decision)


NUDGE_INTERVALS = (300.0, 600.0, 900.0)   # seconds to the 1st, 2nd, 3rd nudge; then every 900 s (at least every 15 min)
EPISODE_ACTIONS = ("alert", "escalate")
NUDGE_ACTIONS = ("nudge", "nudge_deferred", "nudge_stopped")


def _step_due(now: float, interval: float) -> float:
    """When the chain's next step is due: `interval` after `now`, in whole seconds, rounded down. A step is
    scheduled as at(yyyy-mm-ddThh:mm:ss) and recorded (nudge_at, decided_at) in whole seconds, so a due time
    with a fraction (crash times have milliseconds) ran a fraction later than its record says; rounded down,
    the step runs at the second it is recorded at, and no gap is longer than its interval."""
    return math.floor(now) + interval


def mark_applied(store: Store, decision: Decision, deployment_id: str | None = None) -> None:
    """Record that a decision's actions were carried out (so it is not returned again). `deployment_id`:
    the deployment a `nudge` started (its own IN_PROGRESS then does not defer the chain's next step)."""
    if decision.action in EPISODE_ACTIONS:
        store.update_episode(decision.service, {"pending": None})
    elif decision.action in NUDGE_ACTIONS:
        store.update_episode(decision.service, {"nudge_pending": None, **({"nudge_deployment": deployment_id} if deployment_id else {})})
    else:
        store.update_halt(decision.service, {"applied": True})


def _drop_old_scale_to_zero(store: Store, key: str, halt: dict[str, Any]) -> None:
    """An earlier version decided to scale `key` to zero and did not finish applying it: never do it now.
    When its attempt may have got as far as scaling in (it records previous_desired_count first), the
    marker is kept, marked applied and dropped, so `resume` restores that count; otherwise nothing was
    changed on the service and the marker is removed (crashes keep counting: no resume time is recorded)."""
    if halt.get("previous_desired_count"):
        store.update_halt(key, {"applied": True, "dropped": "scale_to_zero is no longer carried out"})
        what = "kept as applied: resume restores its desired count"
    else:
        store.clear_halt(key, 0.0)
        what = "removed"
    logger.warning("crashloop: a scale_to_zero halt of %s recorded by an earlier version (decided %s) was not carried out "
                   "and never will be: the detector no longer stops a stable revision; marker %s",
                   key, halt.get("decided_at", "?"), what)


def _short(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1]

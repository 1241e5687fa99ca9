"""Crashloop detector benchmark on generated, labelled ECS event traces.

A day of events across many services of one cluster: deployments (with old tasks replaced),
scale-in, Fargate Spot interruptions, maintenance and user stops, sporadic one-off crashes (an OOM
now and then: NOT a crashloop), and labelled crashloop incidents: bad deployments (the new task
definition never starts or keeps exiting) and steady-state breakage (lost database, expired secret),
some with ECS's launch back-off. On top, the Mastodon services (core, web, streaming, sidekiq-default,
sidekiq-pull) on their stable revisions live through a dependency outage (the database unreachable for
--outage-minutes, then back: synth.dependency_outage). Delivery is EventBridge-like: out of order by up
to 30 s and ~3% duplicates.

Prints, per noise scenario: events/s through the real detector (in-memory store) and the ratio to a
reference run in the same process (parsing the same events with the Powertools Parser models only);
true halts of bad deployments (rollbacks) and their crashes-to-halt; alerts (stable-revision crashloops,
left running) and their crashes-to-alert, escalations; false halts and false alerts; precision/recall
of decisions against the labels; action accuracy (rollback for bad deployments, alert for steady-state
crashloops); and the minutes the detector held a service at zero tasks after the dependency outage
ended (site-down = the core service, which alone serves at no load; counted to the end of the trace,
as nobody resumes in a replay).

Then, for dependency outages during which tasks never reach RUNNING (secrets, image or ENI unreachable:
TaskFailedToStart), ECS's service throttle logic is modelled (launches spaced out up to the documented 27
minutes; synth.throttled_outage) and the minutes from the outage's end until a task runs are reported
without nudges (the detector before them) and with them (forced new deployments at backed-off intervals).

    python bench/crashloop.py [--services 60] [--hours 24] [--seeds 5] [--threshold 3] [--window-minutes 10] [--outage-minutes 6]
                              [--throttled-outage-minutes 6 20 45 60 90 120] [--throttle-base-seconds 60]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("layers/tootstack", "dev")]

from tootstack_dev.crashloop import synth  # noqa: E402 - after the sys.path setup above
from tootstack.crashloop.detector import Detector, DetectorConfig  # noqa: E402 - after the sys.path setup above
from tootstack.crashloop.models import parse_event  # noqa: E402 - after the sys.path setup above
from tootstack.crashloop.store import MemoryStore  # noqa: E402 - after the sys.path setup above

E = synth.EPOCH
DEBUG = False


@dataclass
class Incident:
    service: str
    task_definition: str
    kind: str             # "bad_deployment" | "steady_state"
    start: float          # epoch seconds of the first crash
    crash_times: list[float]


SITE_SERVICES = tuple(synth.OUTAGE_STOPS)   # core, web, streaming, sidekiq-default, sidekiq-pull


@dataclass
class Outage:
    start: float          # epoch seconds (trace clock, from E)
    end: float
    crashes: dict         # service -> sorted crash times


def generate(seed: int, services: int, hours: float, spikes_per_day: float = 0.0, outage_minutes: float = 0.0):
    rng = random.Random(seed)
    spike_probability = spikes_per_day / 96      # ~96 happenings per service-day (one every ~15 min)
    events: list[tuple[float, dict]] = []
    incidents: list[Incident] = []
    horizon = hours * 3600
    names = [f"svc{i:03d}" for i in range(services)]
    incident_services = set(rng.sample(names, k=max(1, services // 4)))
    task_n = 0

    def at(t: float):
        return E + timedelta(seconds=t)

    def stop(kind, service, td, t, deployment, new_deployment=None):
        nonlocal task_n
        task_n += 1
        events.append((t, synth.task_stopped(kind, service=service, task_definition=td, at=at(t), deployment=deployment,
                                             new_deployment=new_deployment or deployment, task_id=f"{seed:04x}{task_n:028x}")))

    for name in names:
        rev, dep = 1, 1
        td = synth.task_definition_arn(name, rev)
        spot = rng.random() < 0.4
        # the initial deployment completed: its task definition is stable
        stop("user_initiated", name, td, 1.0, f"ecs-svc/{dep}")
        events.append((2.0, synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", service=name, deployment=f"ecs-svc/{dep}", at=at(2.0))))
        incident_at = rng.uniform(0.1, 0.9) * horizon if name in incident_services else None
        incident_kind = rng.choice(["bad_deployment", "steady_state"]) if incident_at else None
        t = 60.0
        while t < horizon:
            t += rng.expovariate(1 / 900)   # something happens every ~15 min per service
            if incident_at is not None and t >= incident_at:
                break
            if rng.random() < spike_probability:
                # a load spike: 1-3 tasks fail ELB health checks within minutes, then the service
                # recovers on its own (labelled NOT a crashloop: the hard case for any threshold)
                for k in range(rng.randint(1, 3)):
                    stop("elb_health_check", name, td, t + k * rng.uniform(30, 240), f"ecs-svc/{dep}")
                continue
            r = rng.random()
            if r < 0.06:                      # a good deployment: new tasks start, old ones are replaced
                old = f"ecs-svc/{dep}"
                dep, rev = dep + 1, rev + 1
                td = synth.task_definition_arn(name, rev)
                new = f"ecs-svc/{dep}"
                events.append((t, synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service=name, deployment=new, at=at(t))))
                for k in range(rng.randint(1, 4)):
                    stop("deployment_replacement", name, synth.task_definition_arn(name, rev - 1), t + 60 + 20 * k, old, new)
                events.append((t + 200, synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", service=name, deployment=new, at=at(t + 200))))
                t += 200
            elif r < 0.40:
                for k in range(rng.randint(1, 3)):
                    stop("scale_in", name, td, t + k, f"ecs-svc/{dep}")
            elif r < 0.65 and spot:
                for k in range(rng.randint(1, 5)):   # a Spot reclaim takes several tasks at once
                    stop("spot_interruption", name, td, t + k * 2, f"ecs-svc/{dep}")
            elif r < 0.75:
                stop(rng.choice(["user_initiated", "termination_notice"]), name, td, t, f"ecs-svc/{dep}")
            elif r < 0.85:
                # sporadic crash: an OOM or a failed health check now and then (not a crashloop)
                stop(rng.choice(["oom", "elb_health_check", "exit_nonzero"]), name, td, t, f"ecs-svc/{dep}")
        if incident_at is None:
            continue
        t = incident_at
        if incident_kind == "bad_deployment":
            old, dep, rev = f"ecs-svc/{dep}", dep + 1, rev + 1
            events.append((t - 30, synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", service=name, deployment=f"ecs-svc/{dep}", at=at(t - 30))))
            bad_td = synth.task_definition_arn(name, rev)
            kinds = [rng.choice(["image_pull", "secrets", "exit_nonzero", "container_health_check"])]
        else:
            bad_td = td
            kinds = [rng.choice(["exit_nonzero", "elb_health_check", "exit_zero", "oom"])]
        backoff = rng.random() < 0.3
        period = rng.uniform(45, 180)
        crash_times = []
        for k in range(12):                  # the loop keeps going (the detector should stop it early)
            crash_times.append(t)
            stop(kinds[0], name, bad_td, t, f"ecs-svc/{dep}")
            t += period * (2 ** k if backoff else 1) * rng.uniform(0.8, 1.2)
            if t > horizon:
                break
        incidents.append(Incident(name, bad_td, incident_kind, incident_at, crash_times))

    # EventBridge-like delivery: up to 30 s late, ~3% duplicated later
    delivered = [(t + rng.uniform(0, 30), e) for t, e in events]
    delivered += [(t + rng.uniform(0, 120), e) for t, e in events if rng.random() < 0.03]
    outage = None
    if outage_minutes > 0:
        # its own random stream, so the rest of the trace is the same with or without the outage
        orng = random.Random(seed + 1_000_003)
        start = orng.uniform(0.2, 0.7) * horizon
        site = [(1.0, e) for e in synth.stable_revisions(SITE_SERVICES, at=at(1.0))]
        site += [(parse_event(e).detail.stoppedAt.timestamp() - E.timestamp(), e)
                 for e in synth.dependency_outage(at(start), outage_minutes, tasks=2, rng=orng)]
        crashes: dict = {}
        for t, e in site[2 * len(SITE_SERVICES):]:
            crashes.setdefault(e["detail"]["group"].split(":", 1)[1], []).append(t)
        outage = Outage(start, start + outage_minutes * 60, crashes)
        delivered += [(t + orng.uniform(0, 30), e) for t, e in site]
        delivered += [(t + orng.uniform(0, 120), e) for t, e in site if orng.random() < 0.03]
    delivered.sort(key=lambda x: x[0])
    return [e for _, e in delivered], incidents, outage


def run_detector(events, threshold, window):
    detector = Detector(DetectorConfig(threshold=threshold, window_seconds=window), MemoryStore())
    decisions = []
    started = time.perf_counter()
    for i, event in enumerate(events):
        d = detector.replay(event)
        if d is not None:
            decisions.append((i, d))
    return decisions, time.perf_counter() - started


def run_reference(events):
    started = time.perf_counter()
    for event in events:
        parse_event(event)
    return time.perf_counter() - started


def evaluate(decisions, incidents, events, outage=None, horizon=0.0):
    by_service = {i.service: i for i in incidents}
    r = dict(tp=0, fp=0, wrong_action=0, crashes_to_halt=[], minutes_to_halt=[], crashes_to_alert=[], fp_causes={},
             true_halts=0, bad_deployments=sum(i.kind == "bad_deployment" for i in incidents), stable_stopped=0,
             alerts=0, escalations=0, false_halts=0, false_alerts=0, repeats=0)
    detected = set()
    site: list = []
    for index, d in decisions:
        decided_at = parse_event(events[index]).detail.stoppedAt.timestamp() - E.timestamp()
        r["alerts"] += d.action == "alert"
        r["escalations"] += d.action == "escalate"
        if d.service_name in SITE_SERVICES:
            # crashes delivered so far (two tasks crash in turn: delivery jitter reorders their stoppedAt)
            delivered = {e["detail"]["taskArn"] for e in events[:index + 1] if e["detail-type"] == "ECS Task State Change"
                         and e["detail"]["group"] == f"service:{d.service_name}" and e["detail"]["stopCode"] != "UserInitiated"}
            site.append((decided_at, d, len(delivered)))
            continue
        if d.action == "escalate":
            continue                                           # a later alert of the same crashloop
        inc = by_service.get(d.service_name)
        if inc and d.task_definition == inc.task_definition and decided_at >= inc.start - 1:
            if inc.service in detected:
                r["repeats"] += 1                              # alerted again after an hour of quiet (backed-off loop)
                continue
            r["tp"] += 1
            detected.add(inc.service)
            crashes = sum(1 for c in inc.crash_times if c <= decided_at + 0.01)  # stoppedAt has ms precision
            expected = "rollback" if inc.kind == "bad_deployment" else "alert"
            if inc.kind == "bad_deployment" and d.action == "rollback":
                r["true_halts"] += 1
                r["crashes_to_halt"].append(crashes)
                r["minutes_to_halt"].append((decided_at - inc.start) / 60)
            elif inc.kind == "steady_state":
                r["crashes_to_alert"].append(crashes)
                r["stable_stopped"] += d.action == "scale_to_zero"
            r["wrong_action"] += d.action != expected
            if d.action != expected and DEBUG:
                print("    wrong action:", inc.kind, d.action, d.reason)
        else:
            r["fp"] += 1
            r["false_halts" if d.action in ("rollback", "scale_to_zero") else "false_alerts"] += 1
            kinds = sorted({e["kind"] for e in d.evidence})
            r["fp_causes"]["+".join(kinds)] = r["fp_causes"].get("+".join(kinds), 0) + 1
    halted_first = {d.service_name for _, d in decisions if d.action in ("rollback", "scale_to_zero")}
    r["masked"] = sum(1 for i in incidents if i.service not in detected and i.service in halted_first)
    r["fn"] = len(incidents) - len(detected)
    r["site"] = {}
    if outage is not None:
        for service in SITE_SERVICES:
            mine = [(t, d, n) for t, d, n in site if d.service_name == service]
            r["site"][service] = dict(
                actions=[d.action for _, d, _ in mine],
                crashes_to_decision=mine[0][2] if mine else None,
                down_minutes=synth.zero_task_seconds([(t, d) for t, d, _ in site], service, after=outage.end, until=horizon) / 60,
            )
    return r


def dist(values):
    if not values:
        return "n/a"
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]  # noqa: E731 - a one-line percentile of this list
    hist = {}
    for v in values:
        hist[v] = hist.get(v, 0) + 1
    shown = ", ".join(f"{k}: {n}" for k, n in sorted(hist.items())) if all(isinstance(v, int) for v in values) else ""
    return f"min {values[0]:.3g}  median {statistics.median(values):.3g}  p90 {q(0.9):.3g}  max {values[-1]:.3g}" + (f"  [{shown}]" if shown else "")


def scenario(args, spikes_per_day: float, verbose: bool) -> dict:
    window = args.window_minutes * 60
    horizon = args.hours * 3600
    totals = dict(events=0, seconds=0.0, ref_seconds=0.0, incidents=0, site_down=0.0, services_down=0.0)
    keys = ("tp", "fp", "fn", "wrong_action", "masked", "true_halts", "bad_deployments", "stable_stopped", "alerts",
            "escalations", "false_halts", "false_alerts", "repeats")
    totals.update({k: 0 for k in keys})
    fp_causes: dict[str, int] = {}
    c2h, m2h, c2a, site_actions, site_c2d = [], [], [], {}, []
    for seed in range(args.seeds):
        events, incidents, outage = generate(seed, args.services, args.hours, spikes_per_day, args.outage_minutes)
        decisions, seconds = run_detector(events, args.threshold, window)
        ref = run_reference(events)
        r = evaluate(decisions, incidents, events, outage, horizon)
        down = {s: v["down_minutes"] for s, v in r["site"].items()}
        if verbose:
            print(f"  trace {seed}: {len(events):6d} events, {len(incidents):2d} labelled crashloops, {len(decisions):3d} decisions "
                  f"(rollbacks of bad deployments {r['true_halts']}/{r['bad_deployments']}, alerts {r['alerts']}, "
                  f"false halts {r['false_halts']}), site down after the outage {down.get('core', 0):.0f} min, "
                  f"{len(events) / seconds:8.0f} events/s")
        totals["events"] += len(events)
        totals["seconds"] += seconds
        totals["ref_seconds"] += ref
        totals["incidents"] += len(incidents)
        totals["site_down"] += down.get("core", 0.0)
        totals["services_down"] += sum(down.values())
        for k in keys:
            totals[k] += r[k]
        for k, n in r["fp_causes"].items():
            fp_causes[k] = fp_causes.get(k, 0) + n
        for service, v in r["site"].items():
            for action in v["actions"]:
                site_actions[action] = site_actions.get(action, 0) + 1
            if v["crashes_to_decision"] is not None:
                site_c2d.append(v["crashes_to_decision"])
        c2h += r["crashes_to_halt"]
        m2h += r["minutes_to_halt"]
        c2a += r["crashes_to_alert"]
    totals.update(fp_causes=fp_causes, c2h=c2h, m2h=m2h, c2a=c2a, site_actions=site_actions, site_c2d=site_c2d)
    return totals


def throttled(args) -> None:
    """Tasks that never reach RUNNING (secrets/image/ENI unreachable): ECS's service throttle logic spaces
    the launches out (synth.throttle_delay: doubling from --throttle-base-seconds, capped at the documented
    27 minutes, https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-throttle-logic.html),
    so the site can stay down long after the cause is gone unless something forces a new deployment.
    Per outage length (jittered +-3 min per trace), each site service on its stable revision: minutes from
    the outage's end to a RUNNING task, with the detector as it was (alert, leave running: no nudges) and
    with nudges (forced new deployments 5, 10, 15, then every 15 min after the alert)."""
    print(f"== launch-throttled outage (TaskFailedToStart; ECS back-off doubling from {args.throttle_base_seconds:g} s, "
          f"cap {synth.THROTTLE_MAX_SECONDS / 60:g} min): minutes from the outage's end until a task of the service runs")
    print(f"  {'outage':>8} | {'no nudges: core mean/max':>25} | {'all services max':>16} | {'nudges: core mean/max':>22} | "
          f"{'all services max':>16} | nudges per service (mean)")
    for minutes in args.throttled_outage_minutes:
        rows = {False: ([], []), True: ([], [])}
        forced = []
        for seed in range(args.seeds):
            rng = random.Random(seed * 7919 + int(minutes))
            length = max(1.0, minutes + rng.uniform(-3, 3))
            start = E + timedelta(minutes=30 + rng.uniform(0, 5))
            for nudge in (False, True):
                core, every = rows[nudge]
                for service in SITE_SERVICES:
                    detector = Detector(DetectorConfig(threshold=args.threshold, window_seconds=args.window_minutes * 60, nudge=nudge))
                    for e in synth.stable_revisions([service]):
                        detector.replay(e)
                    r = synth.throttled_outage(detector, start, length, service=service, base=args.throttle_base_seconds)
                    every.append(r["down_after_end"] / 60)
                    if service == "core":
                        core.append(r["down_after_end"] / 60)
                    if nudge:
                        forced.append(sum(d.action == "nudge" for d in r["decisions"]))
        (c0, a0), (c1, a1) = rows[False], rows[True]
        print(f"  {minutes:>6g} m | {statistics.mean(c0):>15.1f} / {max(c0):>6.1f} | {max(a0):>16.1f} | "
              f"{statistics.mean(c1):>12.1f} / {max(c1):>6.1f} | {max(a1):>16.1f} | {statistics.mean(forced):.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=60)
    p.add_argument("--hours", type=float, default=24)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument("--window-minutes", type=float, default=10)
    p.add_argument("--outage-minutes", type=float, default=6.0,
                   help="a dependency outage across core, web, streaming and sidekiq-* in every trace (0: none)")
    p.add_argument("--spikes-per-day", type=float, nargs="+", default=[0.0, 0.1, 0.5],
                   help="transient health-check bursts per service per day (labelled negative): one scenario each")
    p.add_argument("--throttled-outage-minutes", type=float, nargs="*", default=[6, 20, 45, 60, 90, 120],
                   help="lengths of a dependency outage during which tasks fail to start (ECS launch back-off): one row each")
    p.add_argument("--throttle-base-seconds", type=float, default=60.0,
                   help="first delay of the modelled ECS launch back-off (the increments are not documented; the cap is 27 min)")
    args = p.parse_args(argv)
    print(f"crashloop bench: {args.seeds} traces x {args.services} services x {args.hours:g} h; "
          f"threshold {args.threshold} crashes in {args.window_minutes:g} min; a {args.outage_minutes:g}-min dependency "
          f"outage across {', '.join(SITE_SERVICES)} in each trace")
    for spikes in args.spikes_per_day:
        print(f"== scenario: {spikes:g} transient health-check bursts per service per day")
        t = scenario(args, spikes, verbose=True)
        rate = t["events"] / t["seconds"]
        ref_rate = t["events"] / t["ref_seconds"]
        precision = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else 1.0
        recall = (t["incidents"] - t["fn"]) / t["incidents"] if t["incidents"] else 1.0
        print(f"decision rate: {rate:,.0f} events per second through the detector with the in-memory store")
        print(f"  reference (Parser models only, same events, same process): {ref_rate:,.0f} events/s; "
              f"detector/reference ratio {rate / ref_rate:.2f}")
        print(f"true halts of bad deployments (rollbacks): {t['true_halts']} of {t['bad_deployments']}; "
              f"crashes-to-halt: {dist(t['c2h'])}")
        print(f"  minutes from first crash to halt: {dist([round(m, 1) for m in t['m2h']])}")
        print(f"alerts: {t['alerts']} (+ escalations {t['escalations']}; new alerts of a loop after an hour of quiet "
              f"{t['repeats']}); steady-state crashloops crashes-to-first-decision: {dist(t['c2a'])}; "
              f"steady-state crashloops stopped: {t['stable_stopped']}")
        halts = t["true_halts"] + t["false_halts"]
        print(f"false halts: {t['false_halts']} (halt precision {t['true_halts'] / halts if halts else 1.0:.3f})  "
              f"false alerts: {t['false_alerts']}")
        print(f"precision {precision:.3f}  recall {recall:.3f}  (tp {t['tp']}, fp {t['fp']}, fn {t['fn']} "
              f"of {t['incidents']} labelled crashloops)")
        if t["fp"]:
            print(f"  false decisions by crash kinds in their evidence: {dict(sorted(t['fp_causes'].items(), key=lambda kv: -kv[1]))}")
        if t["fn"]:
            print(f"  missed crashloops: {t['fn']} ({t['masked']} on a service an earlier false halt had already stopped)")
        print(f"action accuracy: {1 - t['wrong_action'] / max(1, t['tp']):.3f} "
              f"(rollback for bad deployments, alert and leave running in steady state)")
        if args.outage_minutes > 0:
            print(f"dependency outage: decisions on {', '.join(SITE_SERVICES)}: {t['site_actions']}; crashes-to-decision: {dist(t['site_c2d'])}")
            print(f"  site-down minutes caused by the detector after the outage ended (core at zero tasks): "
                  f"{t['site_down'] / args.seeds:.0f} per trace; all five services: {t['services_down'] / args.seeds:.0f} service-minutes per trace")
            print("  (these tasks start and then fail health checks or exit: ECS's launch back-off does not apply to them)")
    if args.throttled_outage_minutes:
        throttled(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

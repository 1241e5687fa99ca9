"""Crashloop detector benchmark on generated, labelled ECS event traces.

A day of events across many services of one cluster: deployments (with old tasks replaced),
scale-in, Fargate Spot interruptions, maintenance and user stops, sporadic one-off crashes (an OOM
now and then: NOT a crashloop), and labelled crashloop incidents: bad deployments (the new task
definition never starts or keeps exiting) and steady-state breakage (lost database, expired secret),
some with ECS's launch back-off. Delivery is EventBridge-like: out of order by up to 30 s and ~3%
duplicates.

Prints: events/s through the real detector (in-memory store) and the ratio to a reference run in the
same process (parsing the same events with the Powertools Parser models only), the crashes-to-halt and
minutes-to-halt distributions, precision/recall of halts against the labels, and action accuracy
(rollback for bad deployments, scale_to_zero for steady-state crashloops).

    python bench/crashloop.py [--services 60] [--hours 24] [--seeds 5] [--threshold 3] [--window-minutes 10]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "tootstack"))

from tootstack.crashloop import synth  # noqa: E402
from tootstack.crashloop.detector import Detector, DetectorConfig  # noqa: E402
from tootstack.crashloop.models import parse_event  # noqa: E402
from tootstack.crashloop.store import MemoryStore  # noqa: E402

E = synth.EPOCH
DEBUG = False


@dataclass
class Incident:
    service: str
    task_definition: str
    kind: str             # "bad_deployment" | "steady_state"
    start: float          # epoch seconds of the first crash
    crash_times: list[float]


def generate(seed: int, services: int, hours: float, spikes_per_day: float = 0.0):
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
    delivered.sort(key=lambda x: x[0])
    return [e for _, e in delivered], incidents


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


def evaluate(decisions, incidents, events):
    by_service = {i.service: i for i in incidents}
    tp, fp, wrong_action, crashes_to_halt, minutes_to_halt, fp_causes = 0, 0, 0, [], [], {}
    detected = set()
    for index, d in decisions:
        inc = by_service.get(d.service_name)
        decided_at = parse_event(events[index]).detail.stoppedAt.timestamp() - E.timestamp()
        if inc and d.task_definition == inc.task_definition and decided_at >= inc.start - 1:
            tp += 1
            detected.add(inc.service)
            crashes_to_halt.append(sum(1 for c in inc.crash_times if c <= decided_at + 0.01))  # stoppedAt has ms precision
            minutes_to_halt.append((decided_at - inc.start) / 60)
            expected = "rollback" if inc.kind == "bad_deployment" else "scale_to_zero"
            wrong_action += d.action != expected
            if d.action != expected and DEBUG:
                print("    wrong action:", inc.kind, d.action, d.reason)
        else:
            fp += 1
            kinds = sorted({e["kind"] for e in d.evidence})
            fp_causes["+".join(kinds)] = fp_causes.get("+".join(kinds), 0) + 1
    halted_first = {d.service_name for _, d in decisions}
    masked = sum(1 for i in incidents if i.service not in detected and i.service in halted_first)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = len(detected) / len(incidents) if incidents else 1.0
    return dict(tp=tp, fp=fp, fn=len(incidents) - len(detected), precision=precision, recall=recall,
                wrong_action=wrong_action, crashes_to_halt=crashes_to_halt, minutes_to_halt=minutes_to_halt,
                fp_causes=fp_causes, masked=masked)


def dist(values):
    if not values:
        return "n/a"
    values = sorted(values)
    q = lambda p: values[min(len(values) - 1, int(p * len(values)))]  # noqa: E731
    hist = {}
    for v in values:
        hist[v] = hist.get(v, 0) + 1
    shown = ", ".join(f"{k}: {n}" for k, n in sorted(hist.items())) if all(isinstance(v, int) for v in values) else ""
    return f"min {values[0]:.3g}  median {statistics.median(values):.3g}  p90 {q(0.9):.3g}  max {values[-1]:.3g}" + (f"  [{shown}]" if shown else "")


def scenario(args, spikes_per_day: float, verbose: bool) -> dict:
    window = args.window_minutes * 60
    totals = dict(events=0, seconds=0.0, ref_seconds=0.0, tp=0, fp=0, fn=0, wrong_action=0, incidents=0, masked=0)
    fp_causes: dict[str, int] = {}
    c2h, m2h = [], []
    for seed in range(args.seeds):
        events, incidents = generate(seed, args.services, args.hours, spikes_per_day)
        decisions, seconds = run_detector(events, args.threshold, window)
        ref = run_reference(events)
        r = evaluate(decisions, incidents, events)
        if verbose:
            print(f"  trace {seed}: {len(events):6d} events, {len(incidents):2d} labelled crashloops, {len(decisions):2d} halts "
                  f"(tp {r['tp']}, fp {r['fp']}, fn {r['fn']}), {len(events) / seconds:8.0f} events/s")
        totals["events"] += len(events)
        totals["seconds"] += seconds
        totals["ref_seconds"] += ref
        totals["incidents"] += len(incidents)
        for k in ("tp", "fp", "fn", "wrong_action", "masked"):
            totals[k] += r[k]
        for k, n in r["fp_causes"].items():
            fp_causes[k] = fp_causes.get(k, 0) + n
        c2h += r["crashes_to_halt"]
        m2h += r["minutes_to_halt"]
    totals.update(fp_causes=fp_causes, c2h=c2h, m2h=m2h)
    return totals


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--services", type=int, default=60)
    p.add_argument("--hours", type=float, default=24)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threshold", type=int, default=3)
    p.add_argument("--window-minutes", type=float, default=10)
    p.add_argument("--spikes-per-day", type=float, nargs="+", default=[0.0, 0.1, 0.5],
                   help="transient health-check bursts per service per day (labelled negative): one scenario each")
    args = p.parse_args(argv)
    print(f"crashloop bench: {args.seeds} traces x {args.services} services x {args.hours:g} h; "
          f"threshold {args.threshold} crashes in {args.window_minutes:g} min")
    for n, spikes in enumerate(args.spikes_per_day):
        print(f"== scenario: {spikes:g} transient health-check bursts per service per day")
        t = scenario(args, spikes, verbose=True)
        rate = t["events"] / t["seconds"]
        ref_rate = t["events"] / t["ref_seconds"]
        precision = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else 1.0
        recall = (t["incidents"] - t["fn"]) / t["incidents"] if t["incidents"] else 1.0
        print(f"throughput: {rate:,.0f} events (decisions) per second through the detector with the in-memory store")
        print(f"  reference (Parser models only, same events, same process): {ref_rate:,.0f} events/s; "
              f"detector/reference ratio {rate / ref_rate:.2f}")
        print(f"crashes-to-halt: {dist(t['c2h'])}")
        print(f"minutes from first crash to halt: {dist([round(m, 1) for m in t['m2h']])}")
        print(f"precision {precision:.3f}  recall {recall:.3f}  (tp {t['tp']}, fp {t['fp']}, fn {t['fn']} "
              f"of {t['incidents']} labelled crashloops)")
        if t["fp"]:
            print(f"  false halts by crash kinds in their evidence: {dict(sorted(t['fp_causes'].items(), key=lambda kv: -kv[1]))}")
        if t["fn"]:
            print(f"  missed crashloops: {t['fn']} ({t['masked']} on a service an earlier false halt had already stopped)")
        print(f"action accuracy: {1 - t['wrong_action'] / max(1, t['tp']):.3f} "
              f"(rollback for bad deployments, scale_to_zero in steady state)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

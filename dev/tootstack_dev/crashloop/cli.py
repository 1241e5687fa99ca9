"""`tootstack crashloop replay EVENTS.jsonl` and `tootstack crashloop resume SERVICE`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from tootstack.errors import InvalidInput, TootstackError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crashloop",
        help="crashloop detection: replay recorded ECS events, resume a halted service",
        description="Crashloop detection: rolls back a bad deployment, alerts on a crash-looping stable revision (see docs/crashloop.md).",
    )
    sub = parser.add_subparsers(dest="crashloop_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    replay = sub.add_parser(
        "replay",
        help="feed EventBridge ECS events (one JSON per line) through the detector with local state",
        description=(
            "Feed EventBridge ECS events (one JSON object per line, real event shapes) through the real "
            "detector logic with in-memory state, on the events' own clock. Prints one JSON line per decision "
            "(rollback of a bad deployment, alert or escalate for a stable revision left running, and the "
            "scheduled nudges of a stable revision whose tasks fail to start: nudge, nudge_deferred, nudge_stopped, "
            "fired when the events' clock passes their due time): "
            '{"event_index": i, "service": ..., "action": ..., "reason": ..., "event": {the triggering event}, ...}; '
            "event_index is the 0-based line index. Malformed lines are reported on stderr with their line "
            "number and skipped; the exit code is then 2."
        ),
    )
    replay.add_argument("events", metavar="EVENTS.jsonl", help="file with one event per line ('-' for stdin)")
    replay.add_argument("--threshold", type=int, default=3, help="crashes of one task definition that make a crashloop (default 3)")
    replay.add_argument("--window-minutes", type=float, default=10.0, help="sliding window in minutes (default 10)")
    replay.add_argument("--escalate-minutes", type=float,
                        help="a stable-revision crashloop still going this long is alerted again (default 60, or the window if longer)")
    replay.add_argument("--cluster", help="only events of this cluster (default: all)")
    replay.set_defaults(func=run_replay)

    resume = sub.add_parser(
        "resume",
        help="clear the halted marker of a service the detector rolled back",
        description=(
            "Un-halt a service the detector rolled back: remove the halted tag and marker, and set "
            "--desired-count if given (a service an earlier version scaled to 0 gets back the count recorded "
            "then, and its auto scaling when that version suspended it). A stable revision that crash-loops is never halted and needs no resume. "
            "Crashes from before the resume no longer count."
        ),
    )
    resume.add_argument("service", metavar="SERVICE", help="ECS service name or ARN")
    resume.add_argument("--cluster", help="ECS cluster (default: $CLUSTER_NAME, else the stack's ClusterName output)")
    resume.add_argument("--desired-count", type=int, help="desired count to set (default: the count before the halt)")
    resume.add_argument("--table", help="crashloop DynamoDB table (default: $CRASHLOOP_TABLE, else the stack output)")
    resume.add_argument("--stack", default=os.environ.get("STACK_NAME", "tootstack"), help="CloudFormation stack name (default: $STACK_NAME or tootstack)")
    resume.add_argument("--region", help="AWS region (default: the SDK's)")
    resume.set_defaults(func=run_resume)


def replay_lines(lines: TextIO, threshold: int = 3, window_seconds: float = 600.0, cluster: str | None = None,
                 out: TextIO | None = None, err: TextIO | None = None, source: str = "events",
                 escalate_after_seconds: float | None = None) -> tuple[int, list[int]]:
    """Replay events; returns (decisions printed, malformed line numbers). Never raises for a bad line."""
    out = out or sys.stdout
    err = err or sys.stderr
    from tootstack.crashloop.detector import Detector, DetectorConfig

    detector = Detector(DetectorConfig(threshold=threshold, window_seconds=window_seconds, cluster=cluster,
                                       escalate_after_seconds=escalate_after_seconds))  # in-memory state
    from tootstack.crashloop.models import parse_event

    decisions, bad = 0, []
    clock = float("-inf")
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            event = parse_event(line)
        except InvalidInput as exc:
            bad.append(index + 1)
            print(f"{source} line {index + 1}: {exc}", file=err)
            continue
        # scheduled work (nudges) runs on the events' own clock: every step due before this event fires first
        clock = max(clock, event.time.timestamp())
        for nudge in detector.run_due_nudges(clock - 1e-6):
            decisions += 1
            print(json.dumps(decision_line(None, nudge)), file=out, flush=True)
        decision = detector.replay(event)
        if decision is None:
            continue
        decisions += 1
        print(json.dumps(decision_line(index, decision)), file=out, flush=True)
    return decisions, bad


def decision_line(index: int, decision: Any) -> dict[str, Any]:
    """What replay prints for a decision: what the detector does, why, and the event that triggered it."""
    line = {
        "event_index": index, "service": decision.service_name, "action": decision.action, "reason": decision.reason,
        "via": decision.via, "task_definition": decision.task_definition, "crash_count": decision.crash_count,
        "event": decision.event,
    }
    if decision.target_task_definition:
        line["target_task_definition"] = decision.target_task_definition
    if decision.action in ("alert", "escalate"):
        line.update(service_left_running=True, alerts=decision.alerts, episode_started_at=decision.episode_started_at,
                    crashes_since_start=decision.crashes_since_start, tried=decision.tried)
        if decision.nudge_seq:
            line.update(nudge_at=decision.nudge_at)
    if decision.action.startswith("nudge"):
        line.update(at=decision.decided_at, episode_started_at=decision.episode_started_at, nudges=decision.nudges,
                    force_new_deployment=decision.action == "nudge")
        if decision.nudge_at:
            line["next_nudge_at"] = decision.nudge_at
    return line


def run_replay(args: argparse.Namespace) -> int:
    escalate = args.escalate_minutes * 60 if args.escalate_minutes is not None else None   # DetectorConfig's default
    if args.events == "-":
        _, bad = replay_lines(sys.stdin, args.threshold, args.window_minutes * 60, args.cluster, source="stdin",
                              escalate_after_seconds=escalate)
    else:
        try:
            handle = open(args.events, encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.events}: {exc.strerror}") from None
        with handle:
            try:
                _, bad = replay_lines(handle, args.threshold, args.window_minutes * 60, args.cluster, source=args.events,
                                      escalate_after_seconds=escalate)
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{args.events} is not UTF-8 text: {exc.reason}") from None
    if bad:
        shown = ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else "")
        raise InvalidInput(f"{len(bad)} malformed line(s) skipped: {shown}")
    return 0


def _stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    """The stack's outputs by key ({} when the stack cannot be found)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        found = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack)["Stacks"]
    except ClientError:
        return {}
    except BotoCoreError as exc:
        raise TootstackError(f"cannot read stack {stack}: {type(exc).__name__}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in (found[0].get("Outputs", []) if found else [])}


def run_resume(args: argparse.Namespace) -> int:
    import boto3

    from tootstack.crashloop.actions import resume
    from tootstack.crashloop.store import DynamoStore

    read: list[dict[str, str]] = []

    def stack_output(key: str) -> str | None:  # one DescribeStacks, and only when a value is missing
        if not read:
            read.append(_stack_outputs(args.stack, args.region))
        return read[0].get(key)

    table = args.table or os.environ.get("CRASHLOOP_TABLE") or stack_output("CrashloopTableName")
    if not table:
        raise InvalidInput(f"no crashloop table: pass --table, set CRASHLOOP_TABLE, or deploy stack {args.stack!r} with the CrashloopTableName output")
    cluster = args.cluster or os.environ.get("CLUSTER_NAME")
    if not cluster and not args.service.startswith("arn:") and "/" not in args.service:
        cluster = stack_output("ClusterName")
    result = resume(
        args.service,
        cluster=cluster,
        desired_count=args.desired_count,
        store=DynamoStore(table, boto3.client("dynamodb", region_name=args.region)),
        ecs=boto3.client("ecs", region_name=args.region),
        autoscaling=boto3.client("application-autoscaling", region_name=args.region),
    )
    print(json.dumps(result))
    return 0

"""`tootstack iam-report`: which AWS calls each role made in the rehearsal, any its policies do not allow,
and the statements no call used with their justifications from template.yaml."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import project_root


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "iam-report",
        help="least privilege from the calls made: rehearse, then list unallowed calls and unused statements",
        description=(
            "Run the rehearsal (or read a report it wrote with --report) and print the least-privilege findings: "
            "each role's recorded AWS calls, any call its policies do not allow, every statement no call used "
            "with its justification (template.yaml Metadata iam-unused). Exit 1 on an unallowed call or an unused "
            "statement without a justification. A justified statement that a call did use is noted (STALE): with the "
            "default parameters that is an out-of-date justification (the test suite fails on it); with other "
            "parameters it may be a statement only those exercise."
        ),
    )
    parser.add_argument("--from", dest="from_report", metavar="REPORT", type=Path,
                        help="read the findings from a `tootstack rehearse --report` file instead of rehearsing")
    parser.add_argument("--parameter", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="stack parameter for the rehearsal (repeatable), e.g. -p Profile=micro")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the findings as JSON to FILE")
    parser.add_argument("--calls", action="store_true", help="also list every distinct (role, action, resource) call")
    parser.set_defaults(func=run)


def _findings(args: argparse.Namespace) -> dict[str, Any]:
    if args.from_report:
        try:
            report = json.loads(args.from_report.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot read rehearsal report {args.from_report}: {exc}") from None
        if not report.get("iam"):
            raise InvalidInput(f"{args.from_report} has no least-privilege findings (did the rehearsal reach its last stage?)")
        return report["iam"]
    from tootstack_dev.rehearsal.cli import _parameters, _quiet_emulation_logs
    from tootstack_dev.rehearsal.runner import rehearse

    _quiet_emulation_logs()
    report = rehearse(project_root(), parameters=_parameters(args.parameter), progress=lambda line: None,
                      function_stdout=io.StringIO())
    if not report.iam:
        failed = [f"{s.name}: {s.detail}" for s in report.stages if s.status != "ok"]
        raise InvalidInput("the rehearsal did not reach the least-privilege stage: " + "; ".join(failed))
    return report.iam


def render(iam: dict[str, Any], calls: bool = False) -> str:
    lines = [f"{len(iam['distinct_calls'])} distinct (role, action, resource) calls by {iam.get('roles_called', '?')} roles; "
             f"{len(iam['unallowed'])} not allowed by their role's policies"]
    for u in iam["unallowed"]:
        lines.append(f"  NOT ALLOWED  {u['role']}  {u['action']}  {u['resource']}  ({u['reason']})")
    if calls:
        for c in sorted(iam["distinct_calls"], key=lambda c: (c["role"], c["action"], c["resource"])):
            lines.append(f"  call  {c['role']}  {c['action']}  {c['resource']}")
    lines.append(f"{len(iam['unused_statements'])} statements no call used:")
    for u in iam["unused_statements"]:
        why = u["justification"] or "NOT JUSTIFIED: justify it in template.yaml (Metadata iam-unused) or remove it"
        lines.append(f"  {u['owner']}#{u['sid'] or u['statement'].rsplit('#', 1)[-1]}  {','.join(u['actions'])}\n      {why}")
    for stale in iam.get("stale_justifications", []):
        lines.append(f"  STALE  {stale}: justified as unused, but a call used it (out of date, or used only with these parameters)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    iam = _findings(args)
    print(render(iam, calls=args.calls))
    if args.json:
        args.json.write_text(json.dumps(iam, indent=2) + "\n")
    bad = iam["unallowed"] or any(not u["justification"] for u in iam["unused_statements"])
    if bad:
        print("iam-report: least privilege NOT shown (see above)", file=sys.stderr)
    return 1 if bad else 0

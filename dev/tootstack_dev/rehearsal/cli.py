"""`tootstack rehearse`: the whole stack and its lifecycle on this machine, no AWS account, no Docker."""

from __future__ import annotations

import argparse
import json
import io
import re
import sys
from pathlib import Path

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import project_root


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rehearse",
        help="deploy template.yaml into a local AWS emulation and run every lifecycle stage",
        description=(
            "Translate template.yaml offline (SAM transform), deploy it into moto, start real stand-ins for what "
            "moto skips (redis-server for ElastiCache, docker-registry for Docker Hub and ECR), run every "
            "lifecycle stage and print a report. Exit 0 when every stage is ok, 1 when any failed."
        ),
    )
    parser.add_argument("--report", metavar="FILE", type=Path, help="also write the report as JSON to FILE")
    parser.add_argument("--stack-name", default="tootstack-rehearsal", help="stack name in the emulation (default: %(default)s)")
    parser.add_argument("--region", default="us-east-1", help="region of the emulation (default: %(default)s)")
    parser.add_argument(
        "--parameter", "-p", action="append", default=[], metavar="KEY=VALUE",
        help="override a stack parameter (repeatable), e.g. -p Profile=micro",
    )
    parser.add_argument("--root", type=Path, help="project directory holding template.yaml (default: found from cwd)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only the report")
    parser.add_argument(
        "--verbose", "-v", action="store_true",
        help="also show the Lambda handlers' structured logs and moto's own log lines (off by default)",
    )
    parser.set_defaults(func=run)


def _parameters(items: list[str]) -> dict[str, str]:
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", key):
            raise InvalidInput(f"--parameter expects KEY=VALUE with an alphanumeric key, got {item!r}")
        values[key] = value
    return values


def _quiet_emulation_logs() -> None:
    """The handlers log INFO lines as they would in CloudWatch, and moto logs every expected failure
    the stages provoke (a refused downgrade, a crashing task): useful with --verbose, noise in a report."""
    import logging
    import os

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    logging.getLogger("moto").setLevel(logging.CRITICAL)


def run(args: argparse.Namespace) -> int:
    from tootstack_dev.rehearsal.report import render_text
    from tootstack_dev.rehearsal.runner import rehearse

    root = (args.root or project_root()).resolve()
    if not (root / "template.yaml").is_file():
        raise InvalidInput(f"no template.yaml in {root}")

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if not args.verbose:
        _quiet_emulation_logs()
    # Handlers print what Lambda sends to CloudWatch Logs (log lines, metrics): shown with --verbose only.
    report = rehearse(root, args.stack_name, args.region, _parameters(args.parameter), progress,
                      function_stdout=None if args.verbose else io.StringIO())
    print(render_text(report))
    if args.report:
        args.report.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0 if report.ok else 1

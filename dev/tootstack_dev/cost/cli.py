"""`tootstack cost [--profile micro|standard] [--json] [--template PATH]`."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from tootstack.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="itemise the stack's monthly and daily cost at no load, from template.yaml and a dated price table",
        description=(
            "Evaluate template.yaml for a sizing profile (conditions and parameters applied) and price every "
            "resource it deploys with the dated price table in tootstack_dev/cost/prices.json. Prints each line item, "
            "the totals, the profile's target and every assumption."
        ),
    )
    parser.add_argument("--profile", choices=["micro", "standard"], default="standard", help="sizing profile (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--template", type=Path, help="template to price (default: template.yaml of the project)")
    parser.add_argument("--prices", type=Path, help="price table (default: the one shipped in the package)")
    parser.add_argument("--parameter", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="override another stack parameter (repeatable)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tootstack_dev.cost.model import PRICES_FILE, estimate, load_prices, render_text
    from tootstack_dev.local.template import load_template, project_root

    params = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", key):
            raise InvalidInput(f"--parameter expects KEY=VALUE with an alphanumeric key, got {item!r}")
        if key == "Profile":
            raise InvalidInput("use --profile to choose the profile")
        params[key] = value
    path = args.template or project_root() / "template.yaml"
    if not Path(path).is_file():
        raise InvalidInput(f"template not found: {path}")
    try:
        prices = load_prices(args.prices or PRICES_FILE)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInput(f"cannot read price table {args.prices or PRICES_FILE}: {exc}") from exc
    report = estimate(load_template(Path(path)), args.profile, params, prices, template_name=str(path))
    print(json.dumps(report.as_dict(), indent=2) if args.json else render_text(report))
    return 0

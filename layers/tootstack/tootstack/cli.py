"""The `tootstack` command line. Each capability adds one module to COMMAND_MODULES.

A command module exposes `register(subparsers)`, which adds its sub-command and sets
`func=callable(args) -> int` as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from tootstack import __version__
from tootstack.errors import TootstackError

# Modules are imported lazily by name so `tootstack --help` stays fast and a missing optional
# dependency of one command cannot break the others.
COMMAND_MODULES = [
    "tootstack.rehearsal.cli",
    "tootstack.mirror.cli",
    "tootstack.crashloop.cli",
    "tootstack.cost.cli",
    "tootstack.iam.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tootstack",
        description="Deploy and operate a production Mastodon server on AWS; rehearse it locally first.",
    )
    parser.add_argument("--version", action="version", version=f"tootstack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TootstackError as exc:
        print(f"tootstack {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"tootstack {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

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
    "tootstack_dev.rehearsal.cli",
    "tootstack_dev.mirror.cli",
    "tootstack_dev.crashloop.cli",
    "tootstack_dev.cost.cli",
    "tootstack_dev.iam.cli",
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `command` (the first argument), only the module of that command when one is named
    after it (`tootstack mirror ...` -> tootstack_dev.mirror.cli): a command does not pay for importing the others'
    modules (the rehearsal's pulls in template handling, boto3 for the cost report ...). Help and unknown
    commands get every module."""
    parser = argparse.ArgumentParser(
        prog="tootstack",
        description="Deploy and operate a production Mastodon server on AWS; rehearse it locally first.",
    )
    parser.add_argument("--version", action="version", version=f"tootstack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    own = [name for name in COMMAND_MODULES if command and name.split(".")[1] == command]
    for name in own or COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = build_parser(args_in[0] if args_in else None)
    args = parser.parse_args(args_in)
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

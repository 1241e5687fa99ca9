"""`python -m tootstack.mirror SRC DEST ...`: the mirror command alone (same options as `tootstack mirror`),
without importing the other commands' modules: what a scheduled job or the benchmark runs."""

import argparse
import sys

from tootstack.errors import TootstackError
from tootstack.mirror import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tootstack")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mirror", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except TootstackError as exc:
        print(f"tootstack mirror: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""`python -m tootstack_dev.mirror SRC DEST ...`: the mirror command alone (same options as `tootstack mirror`),
without importing the other commands' modules: what a scheduled job or the benchmark runs."""

import os
import sys

# This process only ever makes synchronous HTTP requests: keep httpcore from importing its async
# backends (anyio, trio) and httpx from importing its own command line (click, rich), which together
# cost about half of the start-up CPU. Only here, in a process we own; never in a shared process.
if __name__ == "__main__":
    for _unused in ("anyio", "trio", "httpx._main"):
        sys.modules.setdefault(_unused, None)  # type: ignore[assignment]

import argparse

from tootstack.errors import TootstackError
from tootstack_dev.mirror import cli


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
    code = main()
    # A one-shot command: once its output is flushed, skip the interpreter's teardown (freeing every module
    # and object one by one costs a few milliseconds, a noticeable part of a warm check). Only in this
    # entry point: every client and file was closed by the `with` blocks that used them, no thread is left.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

"""A rehearsal stage that always fails: proves a failed stage fails the rehearsal."""

NAME = "always-fails"


def run(ctx):
    raise RuntimeError("this stage fails on purpose")

"""The allow-list of one-off commands the run-oneoff state machine may start as a Fargate task.

Input is an argv list (`["tootctl", "media", "usage"]`), never a string: ECS runs the container command
in exec form, so no shell ever parses it. Only the `tootctl` sub-commands and `rails` tasks below are
accepted; everything else is refused with a message that says what is allowed. Commands that print
secrets (`tootctl accounts create`, `--reset-password`, `rails secret`, key generators) are refused:
the create-admin state machine is the way to create an admin.
"""

from __future__ import annotations

import re
from typing import Any

from tootstack.errors import InvalidInput

MAX_ARGS = 32
MAX_ARG_LENGTH = 256

# tootctl <group> <sub-command>: maintenance and moderation commands that print no secret.
TOOTCTL: dict[str, frozenset[str]] = {
    "accounts": frozenset({"approve", "cull", "fix-duplicates", "follow", "merge", "modify", "prune", "refresh",
                           "reject", "unfollow", "delete", "rotate"}),
    "cache": frozenset({"clear", "recount"}),
    "canonical_email_blocks": frozenset({"check", "remove"}),
    "domains": frozenset({"purge", "crawl"}),
    "email_domain_blocks": frozenset({"list", "add", "remove"}),
    "emoji": frozenset({"purge"}),
    "feeds": frozenset({"build", "clear"}),
    "ip_blocks": frozenset({"add", "remove", "export"}),
    "media": frozenset({"usage", "remove", "remove-orphans", "refresh", "lookup"}),
    "preview_cards": frozenset({"remove"}),
    "search": frozenset({"deploy"}),
    "settings": frozenset({"registrations"}),
    "statuses": frozenset({"remove"}),
    "upgrade": frozenset({"storage-schema"}),
}
# tootctl commands without a sub-command.
TOOTCTL_SINGLE = frozenset({"version", "help"})
# Flags refused anywhere in a tootctl command line (they print a password).
TOOTCTL_REFUSED_FLAGS = frozenset({"--reset-password"})

# rails <task>: database tasks the operator runs by hand; never the ones that print keys.
RAILS_TASKS = frozenset({"db:migrate", "db:migrate:status", "db:version", "db:prepare"})

# What each allowed program becomes in the container (WORKDIR /opt/mastodon of the Mastodon image).
PROGRAMS = {"tootctl": ["bin/tootctl"], "rails": ["bin/rails"]}

_SAFE_ARG = re.compile(r"[^\x00-\x1f\x7f]*")


def allowed_summary() -> str:
    tootctl = ", ".join(f"{group} {{{'|'.join(sorted(subs))}}}" for group, subs in sorted(TOOTCTL.items()))
    return (
        f"allowed: tootctl {tootctl}, tootctl {'|'.join(sorted(TOOTCTL_SINGLE))}; "
        f"rails {'|'.join(sorted(RAILS_TASKS))}"
    )


def validate_command(command: Any) -> list[str]:
    """Check an argv list against the allow-list; return the argv to run in the container."""
    if isinstance(command, str):
        raise InvalidInput(
            'command must be a list of arguments like ["tootctl", "media", "usage"], not a string: '
            "nothing is run through a shell"
        )
    if not isinstance(command, list) or not command:
        raise InvalidInput('command must be a non-empty list of arguments like ["tootctl", "media", "usage"]')
    if len(command) > MAX_ARGS:
        raise InvalidInput(f"command has {len(command)} arguments; at most {MAX_ARGS} are accepted")
    for index, arg in enumerate(command):
        if not isinstance(arg, str):
            raise InvalidInput(f"command argument {index} must be a string, got {type(arg).__name__}")
        if not arg or len(arg) > MAX_ARG_LENGTH or not _SAFE_ARG.fullmatch(arg):
            raise InvalidInput(
                f"command argument {index} must be 1-{MAX_ARG_LENGTH} characters without control characters"
            )
    program, args = command[0], command[1:]
    if program == "tootctl":
        _check_tootctl(args)
    elif program == "rails":
        if len(args) != 1 or args[0] not in RAILS_TASKS:
            raise InvalidInput(f"rails task not allowed: {' '.join(args) or '(none)'}; {allowed_summary()}")
    else:
        raise InvalidInput(f"program not allowed: {program!r}; only tootctl and rails are; {allowed_summary()}")
    return [*PROGRAMS[program], *args]


def _check_tootctl(args: list[str]) -> None:
    if not args:
        raise InvalidInput(f"tootctl needs a command; {allowed_summary()}")
    group = args[0]
    if group in TOOTCTL_SINGLE:
        return
    subs = TOOTCTL.get(group)
    if subs is None:
        raise InvalidInput(f"tootctl command not allowed: {group}; {allowed_summary()}")
    if len(args) < 2 or args[1] not in subs:
        sub = args[1] if len(args) > 1 else "(none)"
        hint = " (use the create-admin state machine to create accounts)" if group == "accounts" and sub == "create" else ""
        raise InvalidInput(f"tootctl {group} sub-command not allowed: {sub}{hint}; allowed: {', '.join(sorted(subs))}")
    for arg in args[2:]:
        flag = arg.split("=", 1)[0]
        if flag in TOOTCTL_REFUSED_FLAGS:
            raise InvalidInput(
                f"tootctl flag not allowed: {flag} (it prints the new password into the task's logs); "
                'use the create-admin state machine with "reset_password": true'
            )

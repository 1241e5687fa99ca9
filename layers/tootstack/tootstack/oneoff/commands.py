"""The allow-list of one-off commands the run-oneoff state machine may start as a Fargate task.

Input is an argv list (`["tootctl", "media", "usage"]`), never a string: ECS runs the container command
in exec form, so no shell ever parses it. Only the `tootctl` sub-commands and `rails` tasks below are
accepted, each with the options its sub-command declares, parsed the way tootctl's option parser
(Thor) parses them; everything else is refused with a message that says what is allowed. Commands that
print secrets (`tootctl accounts create`, `accounts modify --reset-password` in any spelling Thor
accepts, `rails secret`, key generators) are refused: the create-admin state machine is the way to
create an admin or reset its password.
"""

from __future__ import annotations

import re
from typing import Any

from tootstack.errors import InvalidInput

MAX_ARGS = 32
MAX_ARG_LENGTH = 256

# tootctl <group> <sub-command> -> the options that sub-command declares (Mastodon's lib/mastodon/cli/<group>.rb,
# `option :name, type: ..., aliases: [...]`) and may be given here: "bool" (a switch), "value" (one
# argument), "array" (one or more arguments). An option not listed is refused, never passed on: the
# ones that print a password or key (`accounts modify --reset-password`, `accounts create`) are absent.
_PARALLEL = {"concurrency": "value", "verbose": "bool", "dry-run": "bool"}
TOOTCTL_OPTIONS: dict[str, dict[str, dict[str, str]]] = {
    "accounts": {
        "approve": {"number": "value", "all": "bool"},
        "cull": {"concurrency": "value", "dry-run": "bool"},
        "delete": {"email": "value", "dry-run": "bool"},
        "fix-duplicates": {"dry-run": "bool"},
        "follow": {"concurrency": "value", "verbose": "bool"},
        "merge": {"force": "bool"},
        "modify": {"role": "value", "remove-role": "bool", "email": "value", "confirm": "bool", "enable": "bool",
                   "disable": "bool", "disable-2fa": "bool", "approve": "bool"},
        "prune": {"concurrency": "value", "dry-run": "bool"},
        "refresh": {"all": "bool", "domain": "value", **_PARALLEL},
        "reject": {"number": "value", "all": "bool"},
        "rotate": {"all": "bool"},
        "unfollow": {"concurrency": "value", "verbose": "bool"},
    },
    "cache": {"clear": {}, "recount": {"concurrency": "value", "verbose": "bool"}},
    "canonical_email_blocks": {"check": {}, "remove": {}},
    "domains": {
        "purge": {"by-uri": "bool", "limited-federation-mode": "bool", "include-subdomains": "bool",
                  "purge-domain-blocks": "bool", **_PARALLEL},
        "crawl": {"concurrency": "value", "format": "value", "exclude-suspended": "bool"},
    },
    "email_domain_blocks": {"list": {}, "add": {"with-dns-records": "bool"}, "remove": {}},
    "emoji": {"purge": {"remote-only": "bool"}},
    "feeds": {"build": {"all": "bool", **_PARALLEL}, "clear": {}},
    "ip_blocks": {
        "add": {"severity": "value", "comment": "value", "duration": "value", "force": "bool"},
        "remove": {"force": "bool"},
        "export": {"format": "value"},
    },
    "media": {
        "usage": {},
        "remove": {"days": "value", "prune-profiles": "bool", "remove-headers": "bool", "include-follows": "bool",
                   **_PARALLEL},
        "remove-orphans": {"start-after": "value", "prefix": "value", "fix-permissions": "bool", "dry-run": "bool"},
        "refresh": {"account": "value", "domain": "value", "status": "value", "days": "value", "force": "bool",
                    **_PARALLEL},
        "lookup": {},
    },
    "preview_cards": {"remove": {"days": "value", "link": "bool", **_PARALLEL}},
    "search": {"deploy": {"concurrency": "value", "batch-size": "value", "only": "array", "import": "bool",
                          "clean": "bool", "reset-chewy": "bool"}},
    "settings": {"registrations": {"require-reason": "bool"}},
    "statuses": {"remove": {"days": "value", "batch-size": "value", "continue": "bool", "clean-followed": "bool",
                            "skip-status-remove": "bool", "skip-media-remove": "bool", "compress-database": "bool"}},
    "upgrade": {"storage-schema": {"dry-run": "bool", "verbose": "bool"}},
}
# Short aliases Mastodon declares (`aliases: [:c]`): the usual ones wherever the option is allowed, and the
# sub-commands whose letters mean something else (ip_blocks add: -c is --comment).
_COMMON_ALIASES = {"-c": "concurrency", "-v": "verbose", "-n": "number", "-b": "batch-size"}
_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("accounts", "merge"): {"-f": "force"},
    ("domains", "crawl"): {"-c": "concurrency", "-f": "format", "-x": "exclude-suspended"},
    ("ip_blocks", "add"): {"-c": "comment", "-d": "duration", "-f": "force"},
    ("ip_blocks", "remove"): {"-f": "force"},
    ("ip_blocks", "export"): {"-f": "format"},
    ("media", "remove"): {"-d": "days", "-c": "concurrency", "-v": "verbose"},
}


def tootctl_aliases(group: str, sub: str) -> dict[str, str]:
    """Short switch -> long option name for one sub-command."""
    if (group, sub) in _ALIASES:
        return _ALIASES[(group, sub)]
    allowed = TOOTCTL_OPTIONS.get(group, {}).get(sub, {})
    return {short: name for short, name in _COMMON_ALIASES.items() if name in allowed}
# tootctl commands without a sub-command (positional arguments only).
TOOTCTL_SINGLE = frozenset({"version", "help"})
# Options refused with a pointer to create-admin (they print the new password into the task's logs).
TOOTCTL_REFUSED_FLAGS = frozenset({"--reset-password"})

# Thor's switch syntax (rails/thor lib/thor/parser/options.rb; Ruby's \w is ASCII): what Thor reads as a switch.
_LONG = re.compile(r"--\w+(?:-\w+)*", re.ASCII)
_SHORT = re.compile(r"-[a-zA-Z]")
_EQ = re.compile(r"(--\w+(?:-\w+)*|-[a-zA-Z])=(.*)", re.ASCII | re.DOTALL)
_SHORT_SQ = re.compile(r"-([a-zA-Z]{2,})")
_SHORT_NUM = re.compile(r"(-[a-zA-Z])(-?[0-9]*\.?[0-9]+)")
_BOOL_WORDS = {"true": True, "TRUE": True, "t": True, "T": True, "false": False, "FALSE": False, "f": False, "F": False}

# rails <task>: database tasks the operator runs by hand; never the ones that print keys.
RAILS_TASKS = frozenset({"db:migrate", "db:migrate:status", "db:version", "db:prepare"})

# What each allowed program becomes in the container (WORKDIR /opt/mastodon of the Mastodon image).
PROGRAMS = {"tootctl": ["bin/tootctl"], "rails": ["bin/rails"]}

_SAFE_ARG = re.compile(r"[^\x00-\x1f\x7f]*")


def allowed_summary() -> str:
    tootctl = ", ".join(f"{group} {{{'|'.join(sorted(subs))}}}" for group, subs in sorted(TOOTCTL_OPTIONS.items()))
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


def _switch_formatted(arg: str) -> bool:
    """Thor's `current_is_switch_formatted?`: would Thor read this argument as a switch?"""
    return any(r.fullmatch(arg) for r in (_LONG, _SHORT, _EQ, _SHORT_SQ, _SHORT_NUM))


def _check_tootctl(args: list[str]) -> None:
    if not args:
        raise InvalidInput(f"tootctl needs a command; {allowed_summary()}")
    group = args[0]
    if group in TOOTCTL_SINGLE:
        _check_options(group, {}, {}, args[1:])
        return
    subs = TOOTCTL_OPTIONS.get(group)
    if subs is None:
        raise InvalidInput(f"tootctl command not allowed: {group}; {allowed_summary()}")
    if len(args) < 2 or args[1] not in subs:
        sub = args[1] if len(args) > 1 else "(none)"
        hint = " (use the create-admin state machine to create accounts)" if group == "accounts" and sub == "create" else ""
        raise InvalidInput(f"tootctl {group} sub-command not allowed: {sub}{hint}; allowed: {', '.join(sorted(subs))}")
    _check_options(f"{group} {args[1]}", subs[args[1]], tootctl_aliases(group, args[1]), args[2:])


def _refuse(command: str, shown: str, allowed: dict[str, str]) -> None:
    if f"--{shown}" in TOOTCTL_REFUSED_FLAGS:
        raise InvalidInput(
            f"tootctl option not allowed: --{shown} (it prints the new password into the task's logs); "
            'use the create-admin state machine with "reset_password": true'
        )
    names = ", ".join(f"--{name}" for name in sorted(allowed)) or "none"
    raise InvalidInput(f"tootctl {command}: option not allowed: {shown!r}; its allowed options: {names}")


def _check_options(command: str, allowed: dict[str, str], aliases: dict[str, str], args: list[str]) -> None:
    """Walk `args` as Thor's option parser does and refuse any switch `command` does not allow.

    Thor reads `_` as `-` (`--reset_password` is `--reset-password`), splits `--opt=value`, negates
    booleans with `--no-opt`/`--skip-opt`, expands `-abc` into `-a -b -c`, maps short aliases, and takes
    `true`/`false` after a boolean switch as its value. Anything Thor would read as a switch must be an
    allowed option here; `--` (end of options) and other dash arguments are refused rather than guessed."""
    pile = list(args)
    while pile:
        arg = pile.pop(0)
        if not arg.startswith("-"):
            continue  # a positional argument (username, domain, URL)
        if arg == "--":
            raise InvalidInput(f"tootctl {command}: '--' is not accepted (give options and arguments directly)")
        value: str | None = None
        if _SHORT_SQ.fullmatch(arg) and not _EQ.fullmatch(arg):
            pile[:0] = [f"-{c}" for c in arg[1:]]
            continue
        if (m := _EQ.fullmatch(arg)) is not None:
            switch, value = m.group(1), m.group(2)
        elif (m := _SHORT_NUM.fullmatch(arg)) is not None:
            switch, value = m.group(1), m.group(2)
        elif _LONG.fullmatch(arg) or _SHORT.fullmatch(arg):
            switch = arg
        else:
            raise InvalidInput(f"tootctl {command}: argument {arg[:40]!r} looks like an option but is not one tootctl reads")
        if switch.startswith("--"):
            name = switch[2:].replace("_", "-")
        else:
            name = aliases.get(switch, "")
            if name not in allowed:
                _refuse(command, switch, allowed)
        kind = allowed.get(name)
        negated = False
        if kind is None:
            for prefix in ("no-", "skip-"):
                if name.startswith(prefix) and allowed.get(name[len(prefix):]) == "bool":
                    kind, negated = "bool", True
        if kind is None:
            _refuse(command, name, allowed)
        if kind == "bool":
            if value is not None and (negated or value not in _BOOL_WORDS):
                raise InvalidInput(f"tootctl {command}: --{name} takes no value other than true or false")
            if value is None and pile and pile[0] in _BOOL_WORDS:
                pile.pop(0)
            continue
        if value is None:
            if not pile or _switch_formatted(pile[0]):
                raise InvalidInput(f"tootctl {command}: --{name} needs a value")
            value = pile.pop(0)
            if kind == "array":
                while pile and not pile[0].startswith("-"):
                    pile.pop(0)
        if value == "" or _switch_formatted(value):
            raise InvalidInput(f"tootctl {command}: --{name} needs a value that is not an option")

"""run-oneoff's security boundaries: tootctl options parsed the way Thor parses them (output redaction over
every staged version of the stack's secrets, which reads them from moto, is in
tests/emulated/test_oneoff_emulated.py).

Thor facts (rails/thor lib/thor/parser/options.rb, `normalize_switch`, `EQ_RE`, `parse_boolean`,
`no_or_skip?`, `SHORT_SQ_RE`, `OPTS_END`): `_` in a switch reads as `-`; `--opt=value` splits at `=`;
`--no-opt` / `--skip-opt` negate a boolean; `-abc` is `-a -b -c`; short aliases map to long options;
`--` ends option parsing. Mastodon facts (mastodon/mastodon lib/mastodon/cli/accounts.rb): `accounts
modify` declares `option :reset_password, type: :boolean` and prints "New password: ..." with it;
`accounts create` always prints the new password; the options and short aliases of the other
sub-commands are those lib/mastodon/cli/{media,statuses,search,domains,preview_cards,ip_blocks}.rb declare.
"""


import pytest

from tootstack.errors import InvalidInput
from tootstack.oneoff import commands


RESET_SPELLINGS = [
    ["--reset-password"], ["--reset_password"], ["--reset_password=true"], ["--reset-password=true"],
    ["--reset-password=t"], ["--RESET-PASSWORD"], ["--reset-password", "true"], ["--reset_password=TRUE"],
    ["--reset-pass"], ["--reset--password"], ["--reset_password=false"], ["--no-reset-password"],
    ["--", "--reset-password"], ["--role", "Owner", "--reset_password"], ["--email=--reset-password"],
    ["--email", "--reset_password"],
]


@pytest.mark.parametrize("flags", RESET_SPELLINGS, ids=lambda f: " ".join(f))
def test_every_spelling_of_reset_password_is_refused(flags):
    with pytest.raises(InvalidInput):
        commands.validate_command(["tootctl", "accounts", "modify", "alice", *flags])


@pytest.mark.parametrize("argv", [
    ["tootctl", "accounts", "modify", "alice", "--role", "Moderator"],
    ["tootctl", "accounts", "modify", "alice", "--role=Moderator", "--approve"],
    ["tootctl", "accounts", "modify", "alice", "--disable_2fa"],
    ["tootctl", "accounts", "modify", "alice", "--no-approve", "--confirm=true"],
    ["tootctl", "accounts", "modify", "alice", "--email", "alice@example.org"],
    ["tootctl", "accounts", "refresh", "--domain", "example.org", "-c", "2", "-v"],
    ["tootctl", "accounts", "refresh", "--all", "--dry_run"],
    ["tootctl", "accounts", "cull", "example.org", "--concurrency=3"],
    ["tootctl", "accounts", "merge", "a@x.org", "b@x.org", "-f"],
    ["tootctl", "accounts", "approve", "-n", "5"],
    ["tootctl", "media", "remove", "--days", "7"],
    ["tootctl", "media", "remove", "-d", "7", "--prune_profiles"],
    ["tootctl", "ip_blocks", "add", "10.0.0.0/8", "--severity", "no_access", "-c", "spam", "-d", "3600"],
    ["tootctl", "domains", "crawl", "-f", "json", "-x"],
    ["tootctl", "search", "deploy", "--only", "accounts", "statuses", "-b", "50"],
    ["tootctl", "version"],
])
def test_declared_options_pass(argv):
    assert commands.validate_command(argv)[0] == "bin/tootctl"


@pytest.mark.parametrize("argv", [
    ["tootctl", "accounts", "modify", "alice", "--concurrency", "5"],      # declared for another sub-command
    ["tootctl", "accounts", "modify", "alice", "--force"],
    ["tootctl", "accounts", "modify", "alice", "-x"],
    ["tootctl", "accounts", "modify", "alice", "-vr"],
    ["tootctl", "accounts", "refresh", "--all", "--verbose=maybe"],
    ["tootctl", "media", "remove", "--days"],                              # a value option without its value
    ["tootctl", "accounts", "modify", "alice", "--role"],
    ["tootctl", "ip_blocks", "add", "10.0.0.1", "--concurrency", "2"],   # -c is --comment there, not --concurrency
    ["tootctl", "accounts", "modify", "alice", "-f"],
])
def test_undeclared_or_malformed_options_are_refused(argv):
    with pytest.raises(InvalidInput):
        commands.validate_command(argv)


def test_refusal_names_the_option_and_the_allowed_ones():
    with pytest.raises(InvalidInput) as caught:
        commands.validate_command(["tootctl", "accounts", "modify", "alice", "--reset_password=true"])
    message = str(caught.value)
    assert "reset-password" in message and "create-admin" in message

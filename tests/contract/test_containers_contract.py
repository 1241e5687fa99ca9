"""Every container definition of the stack, started as ECS starts it (entry point by /bin/sh, the task
definition's environment and secrets), connects with the clients Mastodon uses: node `pg` and `ioredis`
(streaming image), libpq through Ruby `pg` and the `redis` gem (Rails image).

Sources: mastodon/mastodon streaming/database.js (DB_SSLMODE mapping: disable/'' no TLS, no-verify
unverified, anything else TLS verified against node's CA store, which NODE_EXTRA_CA_CERTS extends at start),
streaming/redis.js (`new Redis(REDIS_URL, {host, port, db, password})`), config/database.yml
(`sslmode: ENV['DB_SSLMODE'] || 'prefer'`; libpq reads PGSSLROOTCERT), Gemfile (`redis ~> 4.5`, URL parsed
by Ruby's URI). ElastiCache RBAC passwords: 16-128 printable characters without space, `"`, `/` or `@`
(https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html), the rule
tootstack.redis_auth.credentials enforces on rotation, restore and operator edits.
"""

from __future__ import annotations

import string
import subprocess
import tempfile
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from tests.contract.conftest import Container, run_container
from tootstack.redis_auth.credentials import Credential

# one worker deploys the stack once for the whole tier (session fixtures in conftest.py)
pytestmark = pytest.mark.xdist_group("contract")

# What the old template ran (kept here as the control: it pasted the raw password into the URL).
OLD_ENTRY_POINT = ["/bin/sh", "-c",
                   'export REDIS_URL="rediss://$REDIS_USER:$REDIS_PASSWORD@$REDIS_HOST:$REDIS_PORT/0" && exec "$@"',
                   "entrypoint"]

# Every ASCII character a Redis password may hold (printable but space, ", / and @: ElastiCache's rule), and
# beyond ASCII what tootstack.redis_auth.credentials lets through on rotation, restore and operator edits
# (str.isprintable: no categories C* or Z*), mostly ASCII.
PASSWORD_ALPHABET = "".join(c for c in string.printable if c.isprintable() and c not in ' "/@')
PASSWORD_CHARACTERS = st.one_of(
    st.sampled_from(PASSWORD_ALPHABET), st.sampled_from(PASSWORD_ALPHABET), st.sampled_from(PASSWORD_ALPHABET),
    st.characters(exclude_categories=("C", "Z"), exclude_characters=' "/@'))
PASSWORDS = st.text(alphabet=PASSWORD_CHARACTERS, min_size=16, max_size=128)


def pg_env(container: Container, postgres, **override: str) -> dict[str, str]:
    env = {**container.environment, **container.secret_values}
    env.update(DB_HOST=postgres.host, DB_PORT=str(postgres.port), RDS_CA_PEM=postgres.ca_pem)
    env.update(override)
    return env


def redis_env(container: Container, redis, **override: str) -> dict[str, str]:
    env = {**container.environment, **container.secret_values}
    env.update(REDIS_HOST=redis.host, REDIS_PORT=str(redis.port))
    env.update(override)
    return env


def trust_store(redis) -> dict[str, str]:
    """ElastiCache's certificate chains to Amazon's public CA, which the images' system trust store holds; here
    the test CA of the redis-server stands in for it (Ruby's OpenSSL honours SSL_CERT_FILE; node uses the same
    store with --use-openssl-ca). The RDS CA is not in that store: it only comes through the entry point."""
    return {"SSL_CERT_FILE": redis.ca_file, "NODE_OPTIONS": "--use-openssl-ca"}


def one_per_runtime(containers: list[Container]) -> list[Container]:
    seen: dict[str, Container] = {}
    for c in containers:
        seen.setdefault(c.runtime, c)
    return list(seen.values())


def test_every_container_definition_of_the_template_is_covered(stack):
    """The list is the translated template's; each one is registered in ECS and used below."""
    assert {(c.logical_id, c.name) for c in stack.containers} == stack.declared
    assert len(stack.containers) >= 8
    assert {c.runtime for c in stack.containers} == {"node", "ruby"}
    for c in stack.containers:  # every one of them is a Mastodon process: database, Redis, the entry point
        assert c.entry_point[:2] == ["/bin/sh", "-c"] and "DB_HOST" in c.environment, c.label()
        assert {"DB_PASS", "REDIS_USER", "REDIS_PASSWORD"} <= set(c.secrets), c.label()
        # the DB_* branch of streaming's configuration is the one in effect (DATABASE_URL would replace it)
        assert "DATABASE_URL" not in c.environment and "DATABASE_URL" not in c.secrets, c.label()
    assert len({tuple(c.entry_point) for c in stack.containers}) == 1  # one script: the property tests cover all


def test_every_task_definition_is_an_instance_of_the_mastodon_task(stack):
    """The containers above are the task module's (templates/mastodon-task.yaml) as each role instantiates
    it: no task definition of the stack is written anywhere else, so covering these covers the one
    definition in every role (core's three containers, web, both Sidekiq, toolbox, admin)."""
    from_module = {rid for instance in stack.composed.values() if instance["Location"] == "templates/mastodon-task.yaml"
                   for rid in instance["Resources"]}
    assert {c.logical_id for c in stack.containers} == from_module
    assert len(from_module) == 6


def test_every_container_reaches_postgres_encrypted_with_the_certificate_verified(stack, database, node_clients):
    postgres = database
    for c in stack.containers:
        answer = run_container(c, pg_env(c, postgres), {"pg": True})["pg"]
        assert answer["ok"], (c.label(), answer)
        assert answer["ssl"] is True, c.label()
        if c.runtime == "node":
            assert answer["verified"] is True, c.label()
        else:
            assert answer["sslmode"] == "verify-full", c.label()  # libpq: verified chain and host name


def test_verification_is_real_a_server_from_another_ca_is_refused(stack, postgres, node_clients):
    """The template's own RDS CA did not sign the test server's certificate: both clients must refuse it."""
    for c in one_per_runtime(stack.containers):
        answer = run_container(c, pg_env(c, postgres, RDS_CA_PEM=c.environment["RDS_CA_PEM"]), {"pg": True})["pg"]
        assert not answer["ok"], c.label()
        assert "certificate" in answer["error"].lower(), (c.label(), answer["error"])


def test_control_the_old_streaming_configuration_fails(stack, postgres, node_clients):
    """DB_SSLMODE=require with no CA in the environment (the old template): streaming's TLS check fails."""
    streaming = next(c for c in stack.containers if c.runtime == "node")
    env = pg_env(streaming, postgres, DB_SSLMODE="require")
    answer = run_container(streaming, env, {"pg": True}, entry_point=OLD_ENTRY_POINT)["pg"]
    assert not answer["ok"] and "certificate" in answer["error"].lower(), answer


def test_every_container_authenticates_to_redis_as_the_acl_user_over_tls(stack, redis_tls_server, node_clients):
    admin = redis_tls_server.admin_client()
    for c in stack.containers:
        user, password = c.secret_values["REDIS_USER"], c.secret_values["REDIS_PASSWORD"]
        admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
        answer = run_container(c, redis_env(c, redis_tls_server), {"env_url": True}, extra_env=trust_store(redis_tls_server))
        assert answer["redis"] == [{"ok": True, "whoami": user}], c.label()


def _urls_from_entry_point(container: Container, redis, users: list[tuple[str, str]], entry_point=None) -> list[str]:
    """REDIS_URL as the entry point exports it, one real /bin/sh run per (user, password)."""
    urls = []
    for user, password in users:
        env = redis_env(container, redis, REDIS_USER=user, REDIS_PASSWORD=password, RDS_CA_PEM="x")
        with tempfile.TemporaryDirectory(prefix="tootstack-contract-") as tmp:
            env.update(PATH="/usr/bin:/bin", TMPDIR=tmp)
            done = subprocess.run([*(entry_point or container.entry_point), "printenv", "REDIS_URL"], env=env,
                                  capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, container.label()
        url = done.stdout.rstrip("\n")
        if entry_point is None:  # the same encoding as Python's RFC 3986 quoting (only unreserved kept)
            assert url == f"rediss://{quote(user, safe='')}:{quote(password, safe='')}@{redis.host}:{redis.port}/0"
        urls.append(url)
    return urls


def _authenticate(stack, redis, credentials: list[tuple[str, str]], entry_point=None) -> dict[str, list[dict]]:
    """Give the ACL user every password, then let each runtime's client AUTH with every URL in one process."""
    admin = redis.admin_client()
    for user in {u for u, _ in credentials}:
        admin.execute_command("ACL", "SETUSER", user, "reset", "on", *[f">{p}" for u, p in credentials if u == user],
                              "~*", "&*", "+@all")
    answers = {}
    for c in one_per_runtime(stack.containers):
        urls = _urls_from_entry_point(c, redis, credentials, entry_point)
        answers[c.runtime] = run_container(c, redis_env(c, redis), {"redis_urls": urls},
                                           extra_env=trust_store(redis))["redis"]
    return answers


# One batch of 40 (a client process per runtime for all of them); no shrinking: each step would start node
# and ruby again, and the failing batch is small enough to read.
@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
@given(passwords=st.lists(PASSWORDS, min_size=40, max_size=40, unique=True))
def test_any_allowed_password_authenticates_through_the_entry_point(stack, redis_tls_server, node_clients, passwords):
    """40 passwords drawn from every allowed character, plus every allowed character in one password, each run
    through the entry point and used by ioredis and the redis gem (one client process per runtime)."""
    every = (PASSWORD_ALPHABET * 2)[:128]
    for password in [every, *passwords]:  # each one is a password the stack lets in (rotation, restore, edits)
        Credential.from_document({"username": "mastodon", "password": password}, "drawn password")
    # the user name is encoded too (ElastiCache's are tamer; Redis refuses only spaces in them)
    credentials = [("mastodon", p) for p in [every, *passwords]] + [("ops#1<a>%b+c", passwords[0])]
    for runtime, answers in _authenticate(stack, redis_tls_server, credentials).items():
        assert answers == [{"ok": True, "whoami": user} for user, _ in credentials], runtime


def test_control_the_old_entry_point_breaks_on_hash_and_angle_brackets(stack, redis_tls_server, node_clients):
    """The old entry point pasted the raw password into the URL: Ruby's URI refuses `#`, `<` and `>`
    (InvalidURIError); ioredis (WHATWG URL) reads `#` as the start of a fragment and a stray `%` as a broken
    escape, while it percent-encodes `<` and `>` itself and so accepts them. The new entry point passes all."""
    credentials = [("mastodon", "abcdefgh#ijklmnop"), ("mastodon", "abcdefgh<ijklmnop"), ("mastodon", "abcdefgh>ijklmnop"),
                   ("mastodon", "abcdefgh%zzijklmnop")]
    old = _authenticate(stack, redis_tls_server, credentials, OLD_ENTRY_POINT)
    assert [a["ok"] for a in old["ruby"]] == [False, False, False, False], old["ruby"]
    assert [a["ok"] for a in old["node"]] == [False, True, True, False], old["node"]
    for runtime, answers in _authenticate(stack, redis_tls_server, credentials).items():
        assert answers == [{"ok": True, "whoami": "mastodon"}] * len(credentials), (runtime, answers)


def test_the_entry_point_prints_nothing_and_execs_the_command(stack):
    """No secret reaches the container's log through the entry point: it writes nothing to stdout or stderr
    (no tracing), and the process it leaves is the command itself (exec: signals and the exit code are
    Mastodon's)."""
    for c in stack.containers:
        env = {**c.environment, **c.secret_values, "REDIS_PASSWORD": "p#ss<w>rd%with$every^kind&of!char"}
        with tempfile.TemporaryDirectory(prefix="tootstack-contract-") as tmp:
            env.update(PATH="/usr/bin:/bin", TMPDIR=tmp)
            process = subprocess.Popen([*c.entry_point, "sh", "-c", "echo $$; exit 7"], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = process.communicate(timeout=30)
        assert process.returncode == 7 and err == "", c.label()
        assert out == f"{process.pid}\n", c.label()  # the command runs as the entry point's own process

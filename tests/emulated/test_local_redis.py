"""The redis-server stand-in: starts on loopback, enforces TLS and ACLs like the ElastiCache it stands for."""

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

NO_RETRY = {"socket_timeout": 0.5, "retry": Retry(NoBackoff(), 0)}


def test_plain_server_default_user_has_no_password(redis_server):
    assert redis_server.client().ping()
    assert redis_server.admin_client().acl_whoami() == "rehearsal-admin"


def test_tls_server_refuses_plaintext_and_verifies_certificate(redis_tls):
    assert redis_tls.url.startswith("rediss://127.0.0.1:")
    assert redis_tls.client().ping()
    plain = redis.Redis(host=redis_tls.host, port=redis_tls.port, **NO_RETRY)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    wrong_ca = redis.Redis(host=redis_tls.host, port=redis_tls.port, ssl=True, ssl_cert_reqs="required", **NO_RETRY)
    with pytest.raises(redis.exceptions.ConnectionError):
        wrong_ca.ping()  # system CAs do not trust the throwaway CA


def test_password_protected_default_user():
    from tootstack_dev.local.redis import RedisServer

    with RedisServer(password="s3cret-default-pass") as server:
        with pytest.raises(redis.exceptions.AuthenticationError):
            server.client().ping()
        assert server.client(password="s3cret-default-pass").ping()
        assert server.admin_client().ping()

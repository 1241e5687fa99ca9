"""The emulated tier: fixtures that start real servers (redis-server, docker-registry) and moto (LocalAws).

They are defined in tests/fixtures/ and made available to this tier's tests here."""

from tests.fixtures.aws import local_aws
from tests.fixtures.cfn import response_url
from tests.fixtures.oneoff import admin_stack, oneoff_stack
from tests.fixtures.redis import redis_server, redis_tls
from tests.fixtures.registry import registry_basic, registry_plain, registry_token

__all__ = ["admin_stack", "local_aws", "oneoff_stack", "redis_server", "redis_tls", "registry_basic",
           "registry_plain", "registry_token", "response_url"]

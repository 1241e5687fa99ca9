"""A Redis credential and the check that it really works: AUTH then PING, over TLS when TLS is on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError


class AuthenticationFailed(TootstackError):
    """Redis refused a credential (WRONGPASS/NOPERM) or the user is disabled."""


def invoke_probe(lambda_client: Any, function: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
    """Synchronous invoke of the in-VPC RedisProbeFunction (functions/redis_probe) from outside the VPC.
    The payload holds a password: it is never logged. Returns the probe's answer when it is ok; raises
    AuthenticationFailed when Redis refused the credential, DependencyUnavailable for anything else (for an
    unhandled error its type only: its message is not ours to vouch for)."""
    response = lambda_client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(payload).encode())
    try:
        body = json.loads(response["Payload"].read() or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.get("FunctionError"):
        raise DependencyUnavailable(f"{what} through {function} failed: {body.get('errorType', 'error')}")
    if body.get("ok") is True:
        return body
    kind = str(body.get("error") or "error")
    message = f"{what} through {function} failed: {kind}: {str(body.get('message', ''))[:300]}"
    raise (AuthenticationFailed if kind == "AuthenticationFailed" else DependencyUnavailable)(message)


@dataclass(frozen=True)
class Credential:
    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:  # never shows the password, even in tracebacks of dataclass reprs
        return f"Credential(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__

    @classmethod
    def from_document(cls, document: dict[str, Any], what: str) -> "Credential":
        username, password = document.get("username"), document.get("password")
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            raise InvalidInput(f"{what} must be a JSON object with non-empty 'username' and 'password'")
        if not 16 <= len(password) <= 128 or any(c in password for c in ' "/@') or not password.isprintable():
            raise InvalidInput(f"{what}: the password must be 16-128 printable characters without space, \" / or @")
        return cls(username, password)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 6379
    tls: bool = True
    ca_file: str | None = None      # None: the system trust store (ElastiCache's certificates are public)
    timeout: float = 5.0

    def __str__(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"

    def client(self, credential: Credential | None = None) -> Any:
        import redis

        kwargs: dict[str, Any] = {
            "host": self.host, "port": self.port, "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout, "decode_responses": True,
        }
        if credential is not None:
            kwargs.update(username=credential.username, password=credential.password)
        if self.tls:
            kwargs.update(ssl=True, ssl_cert_reqs="required")
            if self.ca_file:
                kwargs["ssl_ca_certs"] = self.ca_file
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # no retries: a refused credential must fail now, not after backoff
        return redis.Redis(retry=Retry(NoBackoff(), 0), **kwargs)


def verify(endpoint: Endpoint, credential: Credential, what: str = "credential") -> None:
    """AUTH with `credential` and PING on a fresh connection; raise with a message naming the user and
    endpoint only."""
    import redis

    client = endpoint.client(credential)
    try:
        if client.ping() is not True:
            raise AuthenticationFailed(f"{what} for user {credential.username} at {endpoint}: PING did not answer PONG")
    except redis.exceptions.AuthenticationError:
        raise AuthenticationFailed(f"{what} for user {credential.username} is refused by {endpoint} (WRONGPASS or user disabled)") from None
    except redis.exceptions.ResponseError as exc:
        text = str(exc).split("\n", 1)[0]
        if "WRONGPASS" in text or "NOPERM" in text or "NOAUTH" in text:
            raise AuthenticationFailed(f"{what} for user {credential.username} is refused by {endpoint}: {text[:80]}") from None
        raise DependencyUnavailable(f"Redis at {endpoint} answered an error to AUTH/PING: {text[:120]}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise DependencyUnavailable(f"cannot reach Redis at {endpoint}: {type(exc).__name__}") from None
    finally:
        client.close()


def works(endpoint: Endpoint, credential: Credential) -> bool:
    """True when the credential authenticates; False when Redis refuses it. Unreachable Redis raises."""
    try:
        verify(endpoint, credential)
    except AuthenticationFailed:
        return False
    return True

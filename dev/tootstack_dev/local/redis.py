"""A real redis-server on loopback, standing in for ElastiCache in tests and the rehearsal.

TLS is on when asked (as in the stack: ElastiCache runs with in-transit encryption), with a throwaway
CA and server certificate made for the run. The harness keeps its own privileged ACL user,
"rehearsal-admin", standing for the operator's access; the `default` user starts as a fresh
ElastiCache cluster without AUTH (`nopass`) unless a password is given.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tootstack.errors import DependencyUnavailable
from tootstack_dev.local.network import free_port, write_test_certificates

ADMIN_USER = "rehearsal-admin"


class RedisServer:
    def __init__(self, tls: bool = False, password: str | None = None, binary: str = "redis-server") -> None:
        self.tls = tls
        self.host = "127.0.0.1"
        self.port = 0
        self.ca_file: str | None = None
        self._password = password
        self._binary = binary
        self._admin_password = secrets.token_hex(24)
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"

    def __enter__(self) -> "RedisServer":
        if shutil.which(self._binary) is None:
            raise DependencyUnavailable(f"{self._binary} not found: run `make setup` (apt package redis-server)")
        self._dir = Path(tempfile.mkdtemp(prefix="tootstack-redis-"))
        self.port = free_port()
        default_user = f"user default on >{self._password} ~* &* +@all" if self._password else "user default on nopass ~* &* +@all"
        lines = [
            f"bind {self.host}",
            f"dir {self._dir}",
            "save ''",
            "appendonly no",
            "daemonize no",
            "protected-mode no",
            default_user,
            f"user {ADMIN_USER} on >{self._admin_password} ~* &* +@all",
        ]
        if self.tls:
            paths = write_test_certificates(self._dir, "127.0.0.1")
            self.ca_file = str(paths.ca)
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {paths.cert}",
                f"tls-key-file {paths.key}",
                f"tls-ca-cert-file {paths.ca}",
                "tls-auth-clients no",
            ]
        else:
            lines.append(f"port {self.port}")
        config = self._dir / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)  # holds the harness's admin password
        self._process = subprocess.Popen(
            [self._binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self._dir
        )
        self._wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise DependencyUnavailable(f"redis-server exited on start: {err.strip()[-500:]}")
            try:
                self.admin_client().ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(f"redis-server did not answer on {self.url} within {timeout}s")
                time.sleep(0.05)

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis reaching this server (TLS verified against the test CA)."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "socket_timeout": 5, "decode_responses": True}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.ca_file, ssl_cert_reqs="required")
        return kwargs

    def client(self, username: str | None = None, password: str | None = None, **overrides: Any) -> Any:
        import redis

        return redis.Redis(username=username, password=password, **{**self.connection_kwargs(), **overrides})

    def admin_client(self, **overrides: Any) -> Any:
        """The operator's privileged connection (never the `default` or `mastodon` user); `overrides` go
        to redis.Redis (e.g. shorter timeouts)."""
        return self.client(ADMIN_USER, self._admin_password, **overrides)

    # --- a dependency outage (the crashloop rehearsal): the server stops answering, then comes back --
    def suspend(self) -> None:
        """Freeze the server (SIGSTOP): connections hang and time out as with an unreachable ElastiCache."""
        import signal

        if self._process is None:
            raise DependencyUnavailable("redis-server is not running")
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a suspended server answer again (SIGCONT)."""
        import signal

        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)


def rotation_handler(backend_factory: Any) -> Any:
    """The rotation function's handler with its Redis backend given (`backend_factory()`: the ACL backend on
    the harness's privileged connection), everything else from the routed function's environment as in
    Lambda. Product code takes the backend as an argument (tootstack.redis_auth.entry.rotation_from_env); this
    wiring belongs to the emulation, not to the layer."""
    import os

    from tootstack.redis_auth.entry import handle, rotation_from_env

    def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
        remaining = context.get_remaining_time_in_millis() / 1000 if hasattr(context, "get_remaining_time_in_millis") else None
        return handle(event, rotation_from_env(os.environ, remaining_seconds=remaining, backend=backend_factory()))

    return handler

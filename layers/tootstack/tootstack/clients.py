"""boto3 clients a Lambda handler keeps for its execution environment.

Each handler module holds its own `ClientCache()`: warm invocations reuse the clients, and a fresh
load of the module (a new execution environment, or a test) starts with none.
"""

from __future__ import annotations

from typing import Any


class ClientCache:
    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        """The client for `service`, created on first use (not at import: cold start stays light)."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service)
        return self._clients[service]

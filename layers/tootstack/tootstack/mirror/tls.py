"""One verifying TLS context (certifi bundle) shared by every registry connection of the process."""

from __future__ import annotations

from typing import Any

_TLS_CONTEXT: Any = None


def tls_context() -> Any:
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        import ssl

        import certifi

        _TLS_CONTEXT = ssl.create_default_context(cafile=certifi.where())
    return _TLS_CONTEXT

"""The unit tier's guard: while a test under tests/unit is collected or runs, starting a process or using moto
fails it with UnitTierViolation, which says where such a test belongs (tests/emulated).

Blocked: `import moto` (any moto module; a meta path finder), starting a moto mock when another tier already
imported moto in the same session, a test module holding moto objects, and every way Python starts a process
(subprocess.Popen, os.system, os.fork, os.posix_spawn, os.spawn*, os.exec*), which covers redis-server,
docker-registry, skopeo, PostgreSQL, ruby, node and `python -m ...`. Threads (e.g. an HTTP server on loopback in
the test's own process) are allowed."""

from __future__ import annotations

import importlib.abc
import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator

WHERE = "tests/emulated (see tests/README.md)"


class UnitTierViolation(AssertionError):
    """A unit test started a process or used moto."""


def _refuse(what: str) -> UnitTierViolation:
    return UnitTierViolation(f"the unit tier runs no processes and no moto, but this test {what}; move it to {WHERE}")


class _RefuseMoto(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "moto" or name.startswith("moto."):
            raise _refuse(f"imports {name}")
        return None


def _blocked(name: str):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _refuse(f"starts a process ({name}{_argv(args)})")
    return refuse


def _argv(args: tuple) -> str:
    if not args:
        return ""
    first = args[0]
    return f": {' '.join(map(str, first))[:80]}" if isinstance(first, (list, tuple)) else f": {str(first)[:80]}"


_PROCESS_STARTERS = ["system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "spawnv", "spawnve", "spawnvp",
                     "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe", "execv", "execve", "execvp", "execvpe",
                     "execl", "execle", "execlp", "execlpe"]


@contextmanager
def active() -> Iterator[None]:
    """Refuse processes and moto inside the block."""
    saved: list[tuple[Any, str, Any]] = []

    def swap(owner: Any, name: str, value: Any) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    finder = _RefuseMoto()
    sys.meta_path.insert(0, finder)
    popen_init = subprocess.Popen.__init__

    def popen(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        raise _refuse(f"starts a process (subprocess{_argv((args,))})")

    swap(subprocess.Popen, "__init__", popen)
    for name in _PROCESS_STARTERS:
        if hasattr(os, name):
            swap(os, name, _blocked(f"os.{name}"))
    models = sys.modules.get("moto.core.models")     # moto imported by another tier in this session
    if models is not None:
        def start(self: Any, *args: Any, **kwargs: Any) -> None:
            raise _refuse("starts a moto mock")
        swap(models.MockAWS, "start", start)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
        assert subprocess.Popen.__init__ is popen_init


def check_module(module: Any) -> None:
    """A test module that holds moto objects (imported before the guard saw it, e.g. by another tier)."""
    for name, value in vars(module).items():
        origin = getattr(value, "__module__", None) or getattr(value, "__name__", None) or ""
        if isinstance(origin, str) and (origin == "moto" or origin.startswith("moto.")):
            raise _refuse(f"module {module.__name__} holds {name} from {origin}")

"""The unit tier: pure logic, no processes, no moto (tests/unit/README.md). The guard (tests/unit/guard.py) makes
a test that starts a process or uses moto fail with a message that says where it belongs; it is active while
a module of this directory is imported and while each of its tests runs (setup, call, teardown)."""

from contextlib import nullcontext
from pathlib import Path

import pytest

from tests.fixtures.cfn import response_url  # a loopback HTTP server in a thread: no process
from tests.unit import guard

__all__ = ["response_url"]

UNIT = Path(__file__).parent


def _in_unit(path: Path) -> bool:
    return UNIT == Path(path) or UNIT in Path(path).parents


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    if not _in_unit(collector.path):
        yield
        return
    with guard.active():
        outcome = yield
    module = getattr(collector, "obj", None) if isinstance(collector, pytest.Module) else None
    if module is not None:
        report = outcome.get_result()
        try:
            guard.check_module(module)
        except guard.UnitTierViolation as error:
            report.outcome, report.longrepr, report.result = "failed", str(error), []


def _guarded(item):
    return guard.active() if _in_unit(item.path) else nullcontext()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _guarded(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _guarded(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    with _guarded(item):
        yield

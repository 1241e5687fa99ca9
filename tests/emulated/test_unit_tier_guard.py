"""Control for the unit tier's guard (tests/unit/guard.py, tests/unit/conftest.py): test files that start a
process or use moto, placed in a copy of tests/unit, fail with UnitTierViolation, while the same files pass
without the guard, and a pure test passes with it. Each run is a fresh pytest process (pytester), so moto is
not already imported, as in `make unit`."""

import shutil
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).parents[1]

VIOLATIONS = {
    "test_pure.py": """
        def test_pure():
            assert sum([1, 2]) == 3
        """,
    "test_module_imports_moto.py": """
        from moto import mock_aws

        def test_uses_it():
            assert mock_aws
        """,
    "test_function_imports_moto.py": """
        def test_lazy_moto():
            from moto.events.models import EventPattern
            assert EventPattern
        """,
    "test_starts_processes.py": """
        import os
        import subprocess
        import sys

        def test_subprocess_run():
            assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0

        def test_os_system():
            assert os.system("true") == 0

        def test_redis_server():
            from tootstack_dev.local.redis import RedisServer
            with RedisServer() as server:
                assert server.port
        """,
}


def _tree(pytester: pytest.Pytester, guarded: bool) -> None:
    """tests/__init__.py, tests/unit/{__init__,conftest,guard}.py as in the project (or without the guard), and
    the violating files."""
    tests = pytester.path / "tests"
    (tests / "unit").mkdir(parents=True)
    (tests / "__init__.py").write_text("")
    (tests / "unit" / "__init__.py").write_text("")
    if guarded:
        shutil.copy(TESTS / "unit" / "guard.py", tests / "unit" / "guard.py")
        conftest = (TESTS / "unit" / "conftest.py").read_text()
        # the project's tests.fixtures package is not in the copy; the guard does not need it
        conftest = conftest.replace("from tests.fixtures.cfn import response_url", "response_url = None")
        (tests / "unit" / "conftest.py").write_text(conftest)
    for name, body in VIOLATIONS.items():
        (tests / "unit" / name).write_text(textwrap.dedent(body))


def _run(pytester: pytest.Pytester, guarded: bool) -> pytest.RunResult:
    _tree(pytester, guarded)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-rA",
                                         "--continue-on-collection-errors", "tests/unit")


@pytest.mark.timeout(120)
def test_the_guard_fails_every_process_and_every_moto_use_with_a_clear_error(pytester):
    result = _run(pytester, guarded=True)
    out = result.stdout.str()
    result.assert_outcomes(passed=1, failed=4, errors=1)
    assert "PASSED tests/unit/test_pure.py::test_pure" in out
    assert "ERROR tests/unit/test_module_imports_moto.py" in out
    for test in ("test_function_imports_moto.py::test_lazy_moto", "test_starts_processes.py::test_subprocess_run",
                 "test_starts_processes.py::test_os_system", "test_starts_processes.py::test_redis_server"):
        assert f"FAILED tests/unit/{test}" in out
    assert "this test imports moto" in out and "move it to tests/emulated" in out
    assert "this test starts a process (subprocess: " in out and "redis-server" in out
    assert "this test starts a process (os.system: true)" in out


@pytest.mark.timeout(120)
def test_control_the_same_files_pass_without_the_guard(pytester):
    result = _run(pytester, guarded=False)
    result.assert_outcomes(passed=6)

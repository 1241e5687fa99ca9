"""What the Lambda layer and the handlers ship: product code only (unit tier: ASTs and files, no processes).

- No shipped module imports the development package or a test/emulation tool: tootstack_dev, moto,
  samtranslator, yaml, pytest, hypothesis (the layer's requirements are layers/tootstack/requirements.txt,
  and none of these is in it).
- Every setting a shipped module reads from the environment is set by a template or documented in
  docs/settings.md with what it is for in production; the retired rehearsal switches are read nowhere.
- Lock primitives have one home (tootstack.locks), below the workflows that use them.
Each check runs against a planted violation too, so it is shown to catch one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers/tootstack/tootstack"
FORBIDDEN_IMPORTS = {"tootstack_dev", "moto", "samtranslator", "yaml", "pytest", "hypothesis"}
# Switches that existed only for the rehearsal or the tests: what replaced each is in docs/settings.md.
RETIRED_SETTINGS = {"MIRROR_REGISTRY_OVERRIDE", "MIRROR_PLAIN_HTTP", "GUARD_POLL_SECONDS", "GUARD_MAX_CHECKS",
                    "BRIDGE_POLL_SECONDS", "CRASH_WINDOW_SECONDS"}
# Set by the Lambda runtime or Powertools' documented environment, not by us.
RUNTIME_SETTINGS = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_FUNCTION_NAME", "POWERTOOLS_SERVICE_NAME",
                    "POWERTOOLS_METRICS_NAMESPACE"}
_ENV_RECEIVER = re.compile(r"(^|\.)(environ|env)$")


def shipped_modules() -> list[Path]:
    return sorted(LAYER.rglob("*.py")) + sorted((ROOT / "functions").glob("*/*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    """Top-level names of every import, at any depth (imports inside functions included), and of
    importlib.import_module("...") with a literal name."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value.split(".")[0])
    return found


def settings_read(tree: ast.AST) -> set[str]:
    """Names read from the environment: os.environ[...] / .get / os.getenv, and the same on a mapping
    named `env` (the modules' `*_from_env(env)` helpers)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            if node.func.attr == "getenv" or (node.func.attr in ("get", "pop", "setdefault")
                                              and _ENV_RECEIVER.search(ast.unparse(node.func.value))):
                found.add(node.args[0].value)
        elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)
              and _ENV_RECEIVER.search(ast.unparse(node.value))):
            found.add(node.slice.value)
    return found


def string_constants(tree: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def template_settings() -> set[str]:
    """Every Lambda environment variable a template sets (template.yaml, and nested templates/*.yaml)."""
    names: set[str] = set()
    for path in [ROOT / "template.yaml", *sorted((ROOT / "templates").glob("*.yaml"))]:
        in_variables = None
        for line in path.read_text().splitlines():
            indent = len(line) - len(line.lstrip())
            if line.strip() == "Variables:":
                in_variables = indent
                continue
            if in_variables is not None:
                if line.strip() and indent <= in_variables:
                    in_variables = None
                else:
                    match = re.match(r"\s+([A-Z][A-Z0-9_]+):", line)
                    if match and indent == in_variables + 2:
                        names.add(match.group(1))
    return names


def documented_settings() -> set[str]:
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (ROOT / "docs/settings.md").read_text(), re.M))


def forbidden_imports(source: str) -> set[str]:
    return imported_roots(ast.parse(source)) & FORBIDDEN_IMPORTS


def unknown_settings(source: str, allowed: set[str]) -> set[str]:
    tree = ast.parse(source)
    return (settings_read(tree) - allowed) | (string_constants(tree) & RETIRED_SETTINGS)


def allowed_settings() -> set[str]:
    return template_settings() | documented_settings() | RUNTIME_SETTINGS


# --- the checks --------------------------------------------------------------------------------------------
def test_the_layer_and_handlers_import_no_development_or_test_tool():
    offenders = {str(p.relative_to(ROOT)): sorted(forbidden_imports(p.read_text())) for p in shipped_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_setting_read_is_set_by_a_template_or_documented():
    allowed = allowed_settings()
    offenders = {str(p.relative_to(ROOT)): sorted(unknown_settings(p.read_text(), allowed)) for p in shipped_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scans_see_the_shipped_code():
    """Control on the inputs: the walk covers the layer and every handler, and what it reads is real."""
    modules = shipped_modules()
    assert LAYER / "locks.py" in modules and ROOT / "functions/mirror/app.py" in modules
    read = set().union(*(settings_read(ast.parse(p.read_text())) for p in modules))
    assert {"CLUSTER_NAME", "REPOSITORIES", "CRASH_ESCALATE_MINUTES", "REDIS_CA_FILE"} <= read
    assert {"CLUSTER_NAME", "REPOSITORIES", "REDIS_PROBE_FUNCTION"} <= template_settings()
    assert {"MAX_ON_DEMAND", "REDIS_CA_FILE"} <= documented_settings()


@pytest.mark.parametrize("planted", [
    "import moto\n",
    "def f():\n    from moto.ecr.responses import ECRResponse\n",
    "from tootstack_dev.local.aws import LocalAws\n",
    "import yaml, json\n",
    "import importlib\nimportlib.import_module('hypothesis.strategies')\n",
    "def g():\n    import pytest\n",
    "from samtranslator.translator.transform import transform\n",
])
def test_a_planted_import_is_caught(planted):
    assert forbidden_imports(planted)


@pytest.mark.parametrize("planted", [
    "import os\nos.environ.get('MIRROR_REGISTRY_OVERRIDE')\n",
    "import os\nx = os.environ['REHEARSAL_ONLY_ENDPOINT']\n",
    "import os\nos.getenv('INSECURE_TLS', '')\n",
    "def f(env):\n    return env.get('TEST_HOOK')\n",
    "OVERRIDE = 'MIRROR_PLAIN_HTTP'\n",   # a retired switch named anywhere, however it is read
])
def test_a_planted_setting_is_caught(planted):
    assert unknown_settings(planted, allowed_settings())


def test_a_documented_or_template_setting_passes():
    assert not unknown_settings("import os\nos.environ['CLUSTER_NAME']\nos.environ.get('MAX_ON_DEMAND', '2')\n",
                                allowed_settings())


def test_the_lock_primitives_live_below_the_workflows():
    """tootstack.locks is where the lock primitives live; it imports no workflow (upgrade, maintenance,
    first boot), and no workflow defines its own copy of them."""
    tree = ast.parse((LAYER / "locks.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith(("tootstack.upgrade", "tootstack.maintenance", "tootstack.first_boot"))}
    primitives = {"read_lock", "holder_state", "holder_arn"}
    for path in shipped_modules():
        if path.name == "locks.py":
            continue
        defined = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}
        assert not defined & primitives, path


def test_the_layer_requirements_cover_its_third_party_imports():
    """layers/tootstack/requirements.txt (what `sam build` installs into the layer) names every third-party
    distribution the shipped code imports; boto3/botocore come with the Lambda runtime
    (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html), pydantic with Powertools' parser
    extra, certifi with httpx."""
    import sys

    requirements = {re.split(r"[\[=<>]", line)[0].strip().lower()
                    for line in (ROOT / "layers/tootstack/requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    provided = {"boto3", "botocore", "pydantic", "certifi"}
    distribution = {"aws_lambda_powertools": "aws-lambda-powertools"}
    third_party = set()
    for path in shipped_modules():
        for name in imported_roots(ast.parse(path.read_text())):
            if name in sys.stdlib_module_names or name in ("tootstack", "__future__"):
                continue
            third_party.add(distribution.get(name, name))
    assert third_party - provided <= requirements, third_party - provided - requirements
    assert requirements <= third_party | {"aws-lambda-powertools"}   # nothing shipped that nothing imports
    # pyproject's runtime dependencies (the local install) are the layer's plus boto3, which Lambda provides
    import tomllib

    declared = {re.split(r"[\[=<>]", d)[0].strip().lower()
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert declared == requirements | {"boto3"}


def test_the_package_lists_its_capabilities():
    """tootstack.__all__ names every capability module of the layer, and only those (a new one is listed)."""
    import tootstack

    modules = {p.stem if p.is_file() else p.name for p in LAYER.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert set(tootstack.__all__) == modules

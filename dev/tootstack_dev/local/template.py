"""Read template.yaml (composed with its local nested templates) and find the local code behind its
functions (for in-process invocation)."""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from tootstack.errors import InvalidInput


def project_root(start: Path | None = None) -> Path:
    """The directory holding template.yaml: $TOOTSTACK_ROOT, else the nearest parent of `start`/cwd."""
    env = os.environ.get("TOOTSTACK_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "template.yaml").is_file():
            return candidate
    # Installed in editable mode from the repo: dev/tootstack_dev/local/template.py
    repo = Path(__file__).resolve().parents[3]
    if (repo / "template.yaml").is_file():
        return repo
    raise InvalidInput("cannot find template.yaml: run from the project directory or set TOOTSTACK_ROOT")


def load_template(path: Path, compose: bool = True) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, short-form intrinsics (!Ref, !Sub, ...) included. The parse
    (about 0.3 s for template.yaml) is done once per file version; each caller gets its own copy.

    `compose` (the default): every AWS::Serverless::Application whose Location is a local template is
    replaced by that template's resources, as one template (`compose_template`): what the rehearsal
    deploys, the cost model prices, the IAM check reads and the tests assert. `compose=False`: the file
    alone (the root's own layout, the migration test)."""
    import copy

    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise InvalidInput(f"template not found: {path}") from exc
    template = copy.deepcopy(_parsed(str(path.resolve()), stat.st_mtime_ns, stat.st_size))
    if compose:
        from tootstack_dev.local.compose import compose_template

        template = compose_template(template, path.resolve().parent)
    return template


@functools.lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse  # dev dependency: only the local tooling reads templates

    return yaml_parse(Path(path).read_text())


@dataclass(frozen=True)
class LocalFunction:
    """An AWS::Serverless::Function of template.yaml, loadable in-process like `sam local invoke`."""

    logical_id: str
    code_dir: Path
    handler: str  # "module.function", relative to code_dir
    environment: dict[str, Any]

    @cached_property
    def entrypoint(self) -> Callable[[dict, Any], Any]:
        module_name, _, attr = self.handler.rpartition(".")
        path = self.code_dir / (module_name.replace(".", "/") + ".py")
        # A unique module name per function: every handler file is called app.py.
        spec = importlib.util.spec_from_file_location(f"tootstack_functions.{self.logical_id}", path)
        if spec is None or spec.loader is None:
            raise InvalidInput(f"{self.logical_id}: handler file {path} not found")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, attr)


def local_functions(template: dict[str, Any], root: Path) -> dict[str, LocalFunction]:
    """Every serverless function of the template whose CodeUri is a local directory."""
    globals_fn = template.get("Globals", {}).get("Function", {})
    found: dict[str, LocalFunction] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties", {})
        code_uri = props.get("CodeUri", globals_fn.get("CodeUri"))
        handler = props.get("Handler", globals_fn.get("Handler"))
        if not isinstance(code_uri, str) or code_uri.startswith("s3://") or not handler:
            continue
        env = dict(globals_fn.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        found[logical_id] = LocalFunction(logical_id, (root / code_uri).resolve(), handler, env)
    return found

"""Run the rehearsal: stand-ins up, every stage in order, a report whatever happens."""

from __future__ import annotations

import importlib
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tootstack_dev.local.template import load_template
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.rehearsal.stages import STAGE_MODULES

STANDINS_STAGE = "stand-ins"


@dataclass
class StageResult:
    name: str
    status: str          # "ok" | "failed" | "not run"
    seconds: float
    detail: str


@dataclass
class RehearsalReport:
    stack_name: str
    stages: list[StageResult] = field(default_factory=list)
    skipped_resources: list[dict[str, str]] = field(default_factory=list)
    resources: list[dict[str, str]] = field(default_factory=list)
    edge_cache: list[dict[str, Any]] = field(default_factory=list)   # per Mastodon request path: cached or not
    iam: dict[str, Any] = field(default_factory=dict)   # the least-privilege stage's findings (tootstack_dev.iam)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.stages) and all(stage.status == "ok" for stage in self.stages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack_name": self.stack_name,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "stages": [
                {"name": s.name, "status": s.status, "seconds": round(s.seconds, 2), "detail": s.detail}
                for s in self.stages
            ],
            "skipped_resources": self.skipped_resources,
            "resources": self.resources,
            "edge_cache": self.edge_cache,
            "iam": self.iam,
        }


def start_stand_ins(ctx: RehearsalContext, stack: ExitStack) -> str:
    """Real servers for what moto cannot run: redis-server (ElastiCache, TLS on as in the stack) and two
    docker-registry instances ("Docker Hub" with token auth, "ECR" with basic auth)."""
    from tootstack_dev.local.redis import RedisServer
    from tootstack_dev.local.registry import Registry

    ctx.redis = stack.enter_context(RedisServer(tls=True))
    ctx.hub = stack.enter_context(Registry(auth="token"))
    ctx.ecr = stack.enter_context(Registry(auth="basic"))
    ctx.aws.use_ecr_registry(ctx.ecr)   # ecr:GetAuthorizationToken names it, as ECR names the account's registry
    return (
        f"redis-server (TLS) on {ctx.redis.host}:{ctx.redis.port}; "
        f"docker-registry 'Docker Hub' (token auth) on {ctx.hub.host_port}; "
        f"docker-registry 'ECR' (basic auth) on {ctx.ecr.host_port}"
    )


def _timed(name: str, action: Callable[[], str]) -> StageResult:
    started = time.monotonic()
    try:
        detail = action()
        status = "ok"
    except Exception as exc:  # a stage's failure is reported, never a traceback
        status, detail = "failed", f"{type(exc).__name__}: {exc}"
    return StageResult(name, status, time.monotonic() - started, detail or "")


def rehearse(
    root: Path,
    stack_name: str = "tootstack-rehearsal",
    region: str = "us-east-1",
    parameters: dict[str, str] | None = None,
    progress: Callable[[str], None] = print,
    stage_modules: list[str] | None = None,
    function_stdout: Any = None,
) -> RehearsalReport:
    """Deploy template.yaml into moto and run every lifecycle stage; never raises for a stage failure.
    `function_stdout`: where the routed handlers' own output goes (None: this process's stdout)."""
    from tootstack_dev.local.aws import LocalAws

    started = time.monotonic()
    report = RehearsalReport(stack_name)
    ctx = RehearsalContext(root=root, stack_name=stack_name, region=region, parameters=dict(parameters or {}), progress=progress)
    ctx.sam_template = load_template(root / "template.yaml")
    with ExitStack() as stack:
        ctx.aws = stack.enter_context(LocalAws(region=region, function_stdout=function_stdout))
        progress(f"[{STANDINS_STAGE}] starting")
        result = _timed(STANDINS_STAGE, lambda: start_stand_ins(ctx, stack))
        report.stages.append(result)
        progress(f"[{STANDINS_STAGE}] {result.status}: {result.detail}")
        for module_name in stage_modules if stage_modules is not None else STAGE_MODULES:
            module = importlib.import_module(module_name)
            if _deploy_failed(report):
                report.stages.append(StageResult(module.NAME, "not run", 0.0, "an earlier stage it needs failed"))
                continue
            progress(f"[{module.NAME}] starting")
            result = _timed(module.NAME, lambda: module.run(ctx))
            report.stages.append(result)
            progress(f"[{module.NAME}] {result.status} in {result.seconds:.1f}s: {result.detail}")
        report.skipped_resources = ctx.skipped
        report.resources, report.edge_cache, report.iam = ctx.resources, ctx.edge_cache, ctx.iam
    report.seconds = time.monotonic() - started
    return report


def _deploy_failed(report: RehearsalReport) -> bool:
    """Every stage needs the stand-ins and the deployed stack."""
    return any(s.name in (STANDINS_STAGE, "deploy") and s.status != "ok" for s in report.stages)

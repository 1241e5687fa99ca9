"""The upgrade's steps, each one call of functions/upgrade from statemachines/upgrade.asl.json.

Every step is idempotent: a re-run of the same version re-mirrors warm (no copy), reuses the task
definition revisions already pinned to the digests, and leaves services already on them alone. State
data carries names, ARNs and digests only: never a secret.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tootstack import locks
from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError
from tootstack.upgrade.version import compare, parse_version, version_of_image

VERSION_TAG = "tootstack:mastodon-version"
GUARD_POLL_SECONDS = 30   # the state machine's wait between two checks of a rollout (at most max_checks of them)
REGISTER_KEYS = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "volumes",
                 "placementConstraints", "requiresCompatibilities", "cpu", "memory", "pidMode", "ipcMode",
                 "proxyConfiguration", "ephemeralStorage", "runtimePlatform")


class UpgradeInProgress(TootstackError):
    """Another upgrade execution holds the upgrade lock."""


class UpgradeBlocked(TootstackError):
    """A service is halted by the crashloop detector: resume it (or fix it) before upgrading."""


@dataclass
class UpgradeConfig:
    cluster: str
    services: list[str]                       # every service that runs the Mastodon images
    scheduler_service: str                    # the one(s) running the scheduler queue: never twice (comma list)
    toolbox_family: str
    lock_parameter: str
    version_parameter: str
    images: dict[str, dict[str, str]] = field(default_factory=dict)   # role -> {"source", "dest"}
    max_checks: int = 60
    deployed_image: str = ""                  # the MastodonImage stack parameter (a version fallback)
    deployed_streaming_image: str = ""        # the StreamingImage stack parameter (the samconfig.toml hint)
    bridge_service: str = ""                  # burst web service that serves while the stop-first core restarts
    # Task-definition families no service runs but workflows do (the admin task): re-pinned with the
    # toolbox, so every one-off, admin and first-boot task (RunTask by family) runs the upgraded image.
    task_families: list[str] = field(default_factory=list)


def image_role(image: str, images: dict[str, dict[str, str]]) -> str | None:
    """Which of our images a container runs ("mastodon" / "streaming"), by repository."""
    repo = image.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo.rsplit(":", 1)[0]
    for role, spec in images.items():
        if repo in (spec["source"], spec["dest"]):
            return role
    base = repo.rsplit("/", 1)[-1]
    if base.endswith("mastodon-streaming"):
        return "streaming" if "streaming" in images else None
    if base.endswith("mastodon"):
        return "mastodon" if "mastodon" in images else None
    return None


# --- prepare -------------------------------------------------------------------------------------
def current_version(ecs: Any, ssm: Any, cfg: UpgradeConfig) -> str | None:
    """The newest version anything knows of: the one the last upgrade recorded, the running web task
    definition's version tag or image tag, and the image the stack was deployed with (a later
    `sam deploy` with a newer MastodonImage must count too)."""
    known: list[str] = []
    try:
        known.append(ssm.get_parameter(Name=cfg.version_parameter)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        pass
    service = ecs.describe_services(cluster=cfg.cluster, services=cfg.services[:1]).get("services", [])
    if service:
        td = ecs.describe_task_definition(taskDefinition=service[0]["taskDefinition"], include=["TAGS"])
        known += [t["value"] for t in td.get("tags", []) if t.get("key") == VERSION_TAG]
        known += [v for c in td["taskDefinition"]["containerDefinitions"] if (v := version_of_image(c.get("image", "")))]
    if cfg.deployed_image and (v := version_of_image(cfg.deployed_image)):
        known.append(v)
    valid = []
    for version in known:
        try:
            valid.append((parse_version(version), version))
        except InvalidInput:
            continue
    return max(valid)[1] if valid else None


def prepare(event_input: Any, execution: str, *, ecs: Any, ssm: Any, cfg: UpgradeConfig,
            is_halted: Callable[[str], bool], now: float | None = None, sfn: Any = None, execution_arn: str = "",
            autoscaling: Any = None) -> dict[str, Any]:
    if not isinstance(event_input, dict) or set(event_input) - {"version"}:
        raise InvalidInput('upgrade input must be {"version": "v4.5.3"}')
    version = event_input.get("version")
    parse_version(version)
    current = current_version(ecs, ssm, cfg)
    kind = compare(version, current)                      # InvalidInput on a downgrade
    halted = [s for s in cfg.services if is_halted(s)]
    if halted:
        raise UpgradeBlocked(f"service(s) halted by the crashloop detector: {', '.join(halted)}; resume them first")
    lock = {"version": version, "execution": execution, "since": int(time.time() if now is None else now)}
    if execution_arn:
        lock["execution_arn"] = execution_arn
    stale: dict[str, Any] = {}

    def undo_stale(held: dict[str, Any]) -> None:
        # The holder was stopped from the console, timed out or failed before its release step: its lock
        # would refuse every later upgrade and pause maintenance forever. Undo what it held (the bridge
        # minimum) before taking the lock.
        stale.update(held)
        _give_back_bridge(autoscaling, cfg, held)

    recovered = locks.take(
        ssm, sfn, cfg.lock_parameter, lock, execution_arn=execution_arn,
        mine=lambda held: held.get("execution") == execution,
        refuse=lambda held: UpgradeInProgress(f"upgrade lock held by {held.get('execution')} ({held.get('version')})"),
        on_stale=undo_stale)
    if recovered:
        recovered["version"] = stale.get("version")
    result = {"version": version, "current": current, "kind": kind, "execution": execution}
    if recovered:
        result["recovered_stale_lock"] = recovered
    return result


def release(ssm: Any, cfg: UpgradeConfig, execution: str, autoscaling: Any = None) -> bool:
    """Drop this execution's lock; first give the bridge service its autoscaling minimum back (every
    terminal path of the state machine ends here, so a failed upgrade does not keep web at 1 task)."""
    held = locks.read_lock(ssm, cfg.lock_parameter)
    if held is None or held.get("execution") != execution:
        return False
    _give_back_bridge(autoscaling, cfg, held)
    ssm.delete_parameter(Name=cfg.lock_parameter)
    return True


def _give_back_bridge(autoscaling: Any, cfg: UpgradeConfig, held: dict[str, Any]) -> None:
    bridge = held.get("bridge")
    if bridge and autoscaling is not None:
        target = _scalable_target(autoscaling, cfg, bridge["service"])
        if target is not None and target["MinCapacity"] != bridge["min"]:
            _set_min_capacity(autoscaling, cfg, target, bridge["min"])


# --- mirror --------------------------------------------------------------------------------------
def mirror(version: str, cfg: UpgradeConfig, mirror_image: Callable[..., Any], **kwargs: Any) -> dict[str, str]:
    """Mirror each image of the release into ECR; returns role -> pinned reference (dest@digest)."""
    from tootstack.mirror.client import ImageNotFound

    pinned: dict[str, str] = {}
    mirrored: list[str] = []     # repositories already in ECR: shared layers are mounted from them, not pulled again
    for role, spec in sorted(cfg.images.items()):
        source = f"{spec['source']}:{version}"
        try:
            result = mirror_image(source, f"{spec['dest']}:{version}", mount_from=tuple(mirrored), **kwargs)
        except ImageNotFound:
            raise InvalidInput(f"unknown version {version}: {source} does not exist upstream") from None
        mirrored.append(spec["dest"].split("/", 1)[-1])
        pinned[role] = f"{spec['dest']}@{result.digest}"
    return pinned


# --- register ------------------------------------------------------------------------------------
def _live_services(ecs: Any, cfg: UpgradeConfig) -> dict[str, dict[str, Any]]:
    found = ecs.describe_services(cluster=cfg.cluster, services=cfg.services).get("services", [])
    by_name = {s["serviceName"]: s for s in found if s.get("status") == "ACTIVE"}
    missing = [s for s in cfg.services if s not in by_name]
    if missing:
        raise DependencyUnavailable(f"ECS service(s) not found in {cfg.cluster}: {', '.join(missing)}")
    return by_name


def _service_task_definitions(ecs: Any, cfg: UpgradeConfig) -> dict[str, str]:
    return {name: s["taskDefinition"] for name, s in _live_services(ecs, cfg).items()}


def _pinned_revision(ecs: Any, described: dict[str, Any], pinned: dict[str, str], version: str, cfg: UpgradeConfig) -> str:
    """The revision of `described` (a DescribeTaskDefinition answer with tags) running the pinned images:
    itself when it already does, else a new registration."""
    td = described["taskDefinition"]
    containers = []
    changed = False
    for container in td["containerDefinitions"]:
        if container.get("environment"):   # ECS returns strings; keep it so for what describe gave back
            container = dict(container, environment=[dict(e, value=str(e.get("value", ""))) for e in container["environment"]])
        role = image_role(container.get("image", ""), cfg.images)
        if role and role in pinned and container["image"] != pinned[role]:
            container = dict(container, image=pinned[role])
            changed = True
        containers.append(container)
    if not changed:
        return td["taskDefinitionArn"]
    kwargs = {k: td[k] for k in REGISTER_KEYS if td.get(k) not in (None, [], {})}
    kwargs["containerDefinitions"] = containers
    tags = [t for t in described.get("tags", []) if t.get("key") != VERSION_TAG] + [{"key": VERSION_TAG, "value": version}]
    return ecs.register_task_definition(**kwargs, tags=tags)["taskDefinition"]["taskDefinitionArn"]


def _check_recognised(service: str, td: dict[str, Any], cfg: UpgradeConfig) -> None:
    """A service none of whose containers runs one of our images would silently keep its old version."""
    images = [c.get("image", "") for c in td["containerDefinitions"]]
    if not any(image_role(i, cfg.images) for i in images):
        raise TootstackError(f"{service}: no container runs a known Mastodon image ({', '.join(images)[:200]}): "
                             "cannot pin it to the new version; nothing was deployed")


def register(version: str, pinned: dict[str, str], *, ecs: Any, cfg: UpgradeConfig) -> dict[str, Any]:
    """The plan: each service's current and new revision, and the toolbox/admin families' ones. A failure
    partway deregisters the revisions it registered (a family's new revision is its latest at once: one-off,
    admin and first-boot tasks would run the new image on the old schema), then raises."""
    current = _service_task_definitions(ecs, cfg)
    # One DescribeTaskDefinition per distinct task definition (services may share one).
    described = {arn: ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"]) for arn in dict.fromkeys(current.values())}
    for service, arn in current.items():
        _check_recognised(service, described[arn]["taskDefinition"], cfg)
    registered: list[str] = []

    def pinned_revision(d: dict[str, Any]) -> str:
        arn = _pinned_revision(ecs, d, pinned, version, cfg)
        if arn != d["taskDefinition"]["taskDefinitionArn"]:
            registered.append(arn)
        return arn

    families: dict[str, dict[str, str]] = {}
    try:
        new_by_old = {arn: pinned_revision(d) for arn, d in described.items()}
        for family in dict.fromkeys([cfg.toolbox_family, *cfg.task_families]):
            latest = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
            families[family] = {"previous": latest["taskDefinition"]["taskDefinitionArn"], "target": pinned_revision(latest)}
    except Exception:
        for arn in registered:
            ecs.deregister_task_definition(taskDefinition=arn)
        raise
    return {
        "previous": current,
        "target": {service: new_by_old[arn] for service, arn in current.items()},
        "toolbox": families[cfg.toolbox_family]["target"],
        "families": families,
    }


# --- deploy, guard, rollback ---------------------------------------------------------------------
def _update(ecs: Any, cfg: UpgradeConfig, service: str, task_definition: str) -> None:
    kwargs: dict[str, Any] = {"cluster": cfg.cluster, "service": service, "taskDefinition": task_definition}
    if service in _scheduler_services(cfg):
        # Stop the old scheduler before the new one starts: never two processes on the scheduler queue.
        kwargs["deploymentConfiguration"] = {"maximumPercent": 100, "minimumHealthyPercent": 0,
                                             "deploymentCircuitBreaker": {"enable": True, "rollback": True}}
    ecs.update_service(**kwargs)


def _move_services(ecs: Any, cfg: UpgradeConfig, wanted: dict[str, str], live: dict[str, str] | None = None) -> list[str]:
    """Put each service on its wanted task definition; idempotent (a service already there is left alone).
    `live`: service -> task definition as just described (else described here)."""
    live = _service_task_definitions(ecs, cfg) if live is None else live
    moved = []
    for service, task_definition in wanted.items():
        if live.get(service) != task_definition:
            _update(ecs, cfg, service, task_definition)
            moved.append(service)
    return moved


def _scheduler_services(cfg: UpgradeConfig) -> set[str]:
    return {s.strip() for s in cfg.scheduler_service.split(",") if s.strip()}


def _scalable_target(autoscaling: Any, cfg: UpgradeConfig, service: str) -> dict[str, Any] | None:
    found = autoscaling.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[f"service/{cfg.cluster}/{service}"],
        ScalableDimension="ecs:service:DesiredCount").get("ScalableTargets", [])
    return found[0] if found else None


def _set_min_capacity(autoscaling: Any, cfg: UpgradeConfig, target: dict[str, Any], minimum: int) -> None:
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs", ResourceId=target["ResourceId"], ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=minimum, MaxCapacity=max(minimum, target["MaxCapacity"]))


def _hold_bridge(ecs: Any, ssm: Any, autoscaling: Any, cfg: UpgradeConfig, execution: str, task_definition: str,
                 target: dict[str, Any], desired: int) -> None:
    """At least one bridge (burst web) task on the new version: its autoscaling minimum goes to 1 (else
    the quiet-traffic scale-in would remove it again) and release() restores the minimum it had."""
    if target["MinCapacity"] < 1:
        held = locks.read_lock(ssm, cfg.lock_parameter) or {}
        if held.get("execution") == execution and "bridge" not in held:
            held["bridge"] = {"service": cfg.bridge_service, "min": target["MinCapacity"]}
            ssm.put_parameter(Name=cfg.lock_parameter, Value=json.dumps(held), Type="String", Overwrite=True)
        _set_min_capacity(autoscaling, cfg, target, 1)
    ecs.update_service(cluster=cfg.cluster, service=cfg.bridge_service, taskDefinition=task_definition,
                       desiredCount=max(1, desired))


def deploy(plan: dict[str, Any], *, ecs: Any, cfg: UpgradeConfig, ssm: Any = None, autoscaling: Any = None,
           execution: str = "") -> dict[str, Any]:
    """Move the services to the new task definitions. The core (scheduler) service restarts stop-first,
    which at no load leaves no web task: when a bridge service is configured, the first call ("bridge"
    phase) moves every other service and holds one bridge task on the new version; the guard waits
    for it, and the second call moves the core. Idempotent: a re-run finds what is done."""
    core = _scheduler_services(cfg)
    services = _live_services(ecs, cfg)
    live = {name: s["taskDefinition"] for name, s in services.items()}
    pending = {s: td for s, td in plan["target"].items() if live.get(s) != td}
    bridge = cfg.bridge_service
    # Only where autoscaling manages the bridge service: it takes the bridge task away again afterwards.
    target = _scalable_target(autoscaling, cfg, bridge) if bridge in plan["target"] and autoscaling is not None else None
    if target is not None and core & set(pending):
        desired = services[bridge]["desiredCount"]
        others = {s: td for s, td in pending.items() if s not in core}
        if others or desired < 1:
            _hold_bridge(ecs, ssm, autoscaling, cfg, execution, plan["target"][bridge], target, desired)
            moved = _move_services(ecs, cfg, {s: td for s, td in others.items() if s != bridge}, live)
            return {"deployed": sorted({*moved, bridge}), "checks": 0, "phase": "bridge"}
    return {"deployed": _move_services(ecs, cfg, plan["target"], live), "checks": 0, "phase": "all"}


def check(plan: dict[str, Any], checks: int, *, ecs: Any, cfg: UpgradeConfig, is_halted: Callable[[str], bool],
          phase: str = "all") -> dict[str, Any]:
    """"steady" ("bridged" after the bridge phase: deploy again for the core), "in_progress", "failed"
    (circuit breaker / rolled back), "halted" or "timed_out"."""
    targets = {s: td for s, td in plan["target"].items() if phase != "bridge" or s not in _scheduler_services(cfg)}
    found = {s["serviceName"]: s for s in ecs.describe_services(cluster=cfg.cluster, services=list(targets)).get("services", [])}
    waiting = []
    for service, target in targets.items():
        if is_halted(service):
            return {"status": "halted", "detail": f"{service} was halted by the crashloop detector", "checks": checks + 1}
        svc = found.get(service)
        if svc is None:
            return {"status": "failed", "detail": f"{service} not found", "checks": checks + 1}
        primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        if primary is None or primary.get("taskDefinition") != target or svc.get("taskDefinition") != target:
            return {"status": "failed", "detail": f"{service} is not on the new task definition (circuit breaker rollback?)",
                    "checks": checks + 1}
        if primary.get("rolloutState") == "FAILED":
            return {"status": "failed", "detail": f"{service}: deployment failed: {primary.get('rolloutStateReason', '')}"[:300],
                    "checks": checks + 1}
        others = [d for d in svc.get("deployments", []) if d.get("status") != "PRIMARY"]
        done = primary.get("rolloutState") == "COMPLETED" or (
            primary.get("rolloutState") is None and not others and primary.get("runningCount") == primary.get("desiredCount"))
        if not done:
            waiting.append(service)
    if not waiting:
        if phase == "bridge":
            return {"status": "bridged", "detail": "bridge web task serving on the new version; the core is next",
                    "checks": checks + 1, "phase": phase}
        return {"status": "steady", "detail": "every service reached steady state", "checks": checks + 1, "phase": phase}
    if checks + 1 >= cfg.max_checks:
        return {"status": "timed_out", "detail": f"not steady after {checks + 1} checks: {', '.join(waiting)}",
                "checks": checks + 1, "phase": phase}
    return {"status": "in_progress", "detail": f"waiting for {', '.join(waiting)}", "checks": checks + 1, "phase": phase}


def rollback(plan: dict[str, Any], *, ecs: Any, cfg: UpgradeConfig) -> dict[str, Any]:
    """Services back on their previous revisions; the families' new revisions are deregistered, so the
    one-off, admin and first-boot tasks (RunTask by family: the latest ACTIVE revision) run the version
    the services run again."""
    retired = []
    for family, revisions in (plan.get("families") or {}).items():
        if revisions["target"] != revisions["previous"]:
            ecs.deregister_task_definition(taskDefinition=revisions["target"])
            retired.append(family)
    return {"rolled_back": _move_services(ecs, cfg, plan["previous"]), "retired_revisions": retired}


def samconfig_values(version: str, cfg: UpgradeConfig) -> str:
    """What the operator puts in samconfig.toml so the next `sam deploy` runs `version`: the deployed
    images' repositories (else the upgrade's sources) with the new tag."""
    from tootstack.deploy_guard import samconfig_hint

    mastodon = cfg.deployed_image or cfg.images.get("mastodon", {}).get("source", "ghcr.io/mastodon/mastodon")
    streaming = cfg.deployed_streaming_image or cfg.images.get("streaming", {}).get("source", "ghcr.io/mastodon/mastodon-streaming")
    return samconfig_hint({"MastodonImage": mastodon, "StreamingImage": streaming}, version)


def finish(version: str, execution: str, *, ssm: Any, cfg: UpgradeConfig, autoscaling: Any = None) -> dict[str, Any]:
    ssm.put_parameter(Name=cfg.version_parameter, Value=version, Type="String", Overwrite=True)
    release(ssm, cfg, execution, autoscaling)
    return {"version": version, "status": "upgraded", "samconfig": samconfig_values(version, cfg)}

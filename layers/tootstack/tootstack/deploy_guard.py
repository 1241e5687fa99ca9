"""What a `sam deploy` does around the ECS services (functions/deploy_guard, four custom resources).

CloudFormation cannot tell a first deploy from a later one, and resets a service to whatever
`DesiredCount` the template gives on every update that touches the service (an absent one defaults to 1
on create). These custom resources run inside every deploy, in dependency order:

- `Custom::VersionGuard` (after the task definitions, before the services): refuses a deploy whose
  images are older than the version the upgrade recorded (`/<stack>/mastodon/version`) or the running
  services carry: the database is migrated forward, old code on it breaks. The reason names the values
  to put in samconfig.toml. Its properties list every task-definition revision, so it runs whenever
  CloudFormation registers one.
- `Custom::ServiceCounts` (before the services): each service's DesiredCount is what it runs now (0 for
  a service that does not exist yet: the first deploy starts nothing before first boot). No deploy
  changes a running service's task count; no operator flips a flag.
- `Custom::CoreBridge` (after web, before the core): when the deploy changes the core task definition
  of a running core (stop-first: one scheduler), web's autoscaling minimum goes to 1 and the deploy
  waits for a web task, which serves while the core restarts; `Custom::CoreBridgeRelease` (after the
  core) gives the minimum back. The same bridge the upgrade state machine builds. While the stack rolls
  back, `Custom::CoreBridge` gives the minimum back instead of bridging (the handler decides).

The pure functions below take boto3 clients; the handler maps request types onto them.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable

from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError
from tootstack.upgrade.steps import VERSION_TAG
from tootstack.upgrade.version import parse_version, version_of_image



class VersionWouldGoDown(TootstackError):
    """The deploy's images are older than the running (migrated) version."""


# --- ServiceCounts -------------------------------------------------------------------------------
def service_counts(ecs: Any, cluster: str, services: dict[str, str]) -> dict[str, str]:
    """{key: desired count as text} for {key: service name}: the running count, "0" for a service that does
    not exist (yet) or whose cluster does not exist (the first deploy)."""
    counts = {key: "0" for key in services}
    if not cluster or not services:
        return counts
    try:
        found = ecs.describe_services(cluster=cluster, services=list(services.values())).get("services", [])
    except ecs.exceptions.ClusterNotFoundException:
        return counts
    active = {s["serviceName"]: s for s in found if s.get("status") == "ACTIVE"}
    for key, name in services.items():
        if name in active:
            counts[key] = str(int(active[name]["desiredCount"]))
    return counts


# --- VersionGuard --------------------------------------------------------------------------------
def running_version(ecs: Any, ssm: Any, cluster: str, services: list[str], version_parameter: str) -> tuple[str | None, str]:
    """The newest version the stack runs: the one the upgrade recorded, or a running service's task
    definition version tag. Returns (version, where it was read)."""
    known: list[tuple[tuple[int, ...], str, str]] = []
    try:
        value = ssm.get_parameter(Name=version_parameter)["Parameter"]["Value"]
        known.append((parse_version(value), value, f"recorded by the upgrade in {version_parameter}"))
    except ssm.exceptions.ParameterNotFound:
        pass
    except InvalidInput as exc:   # an unparseable record is reported, never ignored
        raise DependencyUnavailable(f"{version_parameter} does not hold a version: {exc}") from None
    if cluster and services:
        try:
            found = ecs.describe_services(cluster=cluster, services=services).get("services", [])
        except ecs.exceptions.ClusterNotFoundException:
            found = []
        for service in found:
            if service.get("status") != "ACTIVE":
                continue
            tags = ecs.describe_task_definition(taskDefinition=service["taskDefinition"], include=["TAGS"]).get("tags", [])
            for tag in tags:
                if tag.get("key") == VERSION_TAG:
                    try:
                        known.append((parse_version(tag["value"]), tag["value"], f"run by the {service['serviceName']} service"))
                    except TootstackError:
                        continue
    if not known:
        return None, ""
    best = max(known)
    return best[1], best[2]


def with_tag(image: str, version: str) -> str:
    """The image reference with its tag set to `version` (a digest is dropped)."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.rsplit(":", 1)[0]
    return f"{head}/{last}:{version}" if head else f"{last}:{version}"


def samconfig_hint(images: dict[str, str], version: str) -> str:
    return " ".join(f"{param}={with_tag(image, version)}" for param, image in images.items())


def check_version(images: dict[str, str], running: str | None, where: str) -> dict[str, str]:
    """images: {"MastodonImage": ref, "StreamingImage": ref}. Raises VersionWouldGoDown when an image's
    version is below the running one; a tag that is not a release version cannot be compared and passes."""
    if running is None:
        return {"Version": "unknown", "Running": "none"}
    lower = {}
    deployed = "unknown"
    for param, image in images.items():
        version = version_of_image(image)
        if version is None:
            continue
        deployed = version
        if parse_version(version) < parse_version(running):
            lower[param] = image
    if lower:
        raise VersionWouldGoDown(
            f"this deploy would run {', '.join(f'{p}={i}' for p, i in lower.items())} but Mastodon {running} is "
            f"{where}; a deploy never lowers the version (the database is migrated forward). Set "
            f"{samconfig_hint(images, running)} in samconfig.toml (parameter_overrides) and deploy again. Nothing was changed.")
    return {"Version": deployed, "Running": running}


# --- CoreBridge ----------------------------------------------------------------------------------
def _scalable_target(autoscaling: Any, cluster: str, service: str) -> dict[str, Any] | None:
    found = autoscaling.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[f"service/{cluster}/{service}"],
        ScalableDimension="ecs:service:DesiredCount").get("ScalableTargets", [])
    return found[0] if found else None


def _set_min(autoscaling: Any, target: dict[str, Any], minimum: int) -> None:
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs", ResourceId=target["ResourceId"], ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=minimum, MaxCapacity=max(minimum, target["MaxCapacity"]))


def bridge(ecs: Any, ssm: Any, autoscaling: Any, *, cluster: str, core: str, web: str, core_task_definition: str,
           record_parameter: str, wait: Callable[[float], None] = time.sleep, poll_seconds: float = 10,
           max_polls: int = 60) -> dict[str, str]:
    """Before CloudFormation moves a running core to `core_task_definition`: one web task serving, held by
    web's autoscaling minimum (recorded in `record_parameter` for the release). A core that is not
    running, or already on that task definition (nothing restarts), needs no bridge. A record still held
    (a deploy failed between bridge and release) keeps its minimum: only the token changes, so the
    release gives back what web had before the first bridge, not the bridge's own 1."""
    found = {s["serviceName"]: s for s in ecs.describe_services(cluster=cluster, services=[core, web]).get("services", [])
             if s.get("status") == "ACTIVE"}
    if core not in found or web not in found:
        return {"Bridged": "no", "Reason": "services not created yet"}
    live = found[core]
    if live["desiredCount"] < 1:
        return {"Bridged": "no", "Reason": "the core is not running (before first boot)"}
    if live["taskDefinition"] == core_task_definition:
        return {"Bridged": "no", "Reason": "the core task definition does not change"}
    target = _scalable_target(autoscaling, cluster, web)
    try:   # a bridge still held (a deploy failed before its release) names what web had before any bridge
        held = json.loads(ssm.get_parameter(Name=record_parameter)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        held = None
    if isinstance(held, dict) and held.get("service") == web and ("min" in held or "desired" in held):
        record: dict[str, Any] = {k: held[k] for k in ("service", "min", "desired") if k in held}
    elif target is not None:
        record = {"service": web, "min": target["MinCapacity"]}
    else:
        record = {"service": web, "desired": found[web]["desiredCount"]}
    record["token"] = uuid.uuid4().hex
    if target is not None and target["MinCapacity"] < 1:
        _set_min(autoscaling, target, 1)
    ssm.put_parameter(Name=record_parameter, Value=json.dumps(record), Type="String", Overwrite=True)
    if found[web]["desiredCount"] < 1:
        ecs.update_service(cluster=cluster, service=web, desiredCount=1)
    for _ in range(max_polls):
        svc = ecs.describe_services(cluster=cluster, services=[web])["services"][0]
        primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), {})
        if svc.get("runningCount", 0) >= 1 and primary.get("rolloutState") in (None, "COMPLETED"):
            return {"Bridged": record["token"], "Reason": "a web task serves while the core restarts"}
        wait(poll_seconds)
    raise DependencyUnavailable(f"no {web} task reached steady state in {max_polls * poll_seconds:.0f}s: the core was "
                                "not restarted (its restart would leave no web task); see the web service's events")


def release_bridge(ssm: Any, autoscaling: Any, ecs: Any, *, cluster: str, record_parameter: str) -> dict[str, str]:
    """After the core's update: web's minimum (or desired count) back to what it was; autoscaling removes
    the bridge task after its quiet scale-in period. Idempotent (no record: nothing to give back)."""
    try:
        record = json.loads(ssm.get_parameter(Name=record_parameter)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return {"Released": "nothing held"}
    web = record["service"]
    if "min" in record:
        target = _scalable_target(autoscaling, cluster, web)
        if target is not None and target["MinCapacity"] != record["min"]:
            _set_min(autoscaling, target, int(record["min"]))
    elif "desired" in record:
        ecs.update_service(cluster=cluster, service=web, desiredCount=int(record["desired"]))
    ssm.delete_parameter(Name=record_parameter)
    return {"Released": web}


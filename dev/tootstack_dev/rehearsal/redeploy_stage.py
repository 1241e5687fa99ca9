"""Rehearsal stage "redeploy": the operator's year after the upgrade, in the order real life brings it.

The earlier stages deployed the stack, ran first boot (db-setup), created the admin and upgraded from
v4.5.2 to the template's default release (MastodonImage's default tag). With samconfig.toml as the README leaves it (no flag), this stage goes on:

  sam deploy of the same template and parameters -> a one-off `rails db:migrate:status` -> Redis
  rotation -> sam deploy of the next tootstack release (same parameters: refused, the images are older
  than the running version) -> sam deploy with the values the upgrade's output named -> maintenance.

After each step it checks: the core service still runs a task (and during the deploys it was never
without one, nor web without a bridge task while the core restarted), every service and the toolbox /
admin families run the upgraded image digest, the recorded version never went down, and maintenance
was not skipped.

`sam deploy` is emulated the way CloudFormation updates a stack: the template is translated again, the
custom resources moto does not run are answered by their handlers' code at their place in the update
(tootstack.deploy_guard: ServiceCounts before the services, VersionGuard before any service moves,
CoreBridge before the core, CoreBridgeRelease after it), and moto's update_stack applies the rest in
dependency order (tootstack_dev.local.cfn_update).
"""

from __future__ import annotations

import copy
import json
import shlex
import uuid
from typing import Any, Callable

import boto3

from tootstack import deploy_guard
from tootstack_dev.iam.record import Principal, acting_as
from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.cfn_update import plan, references
from tootstack_dev.rehearsal.day2_common import toolbox_behavior
from tootstack_dev.rehearsal.deploy import ACCOUNT_ID, ARTIFACT_BUCKET, apply_definition_substitutions
from tootstack_dev.rehearsal.standins import default_stand_ins, substitute
from tootstack_dev.rehearsal.translate import package, sam_transform

NAME = "redeploy"
CORE, WEB = "core", "web"
IMAGE_PARAMETERS = ("MastodonImage", "StreamingImage")


class DeployRefused(TootstackError):
    """The emulated `sam deploy` failed (CloudFormation would roll it back): nothing changed."""


# --- sam deploy, as CloudFormation updates the stack -----------------------------------------------------
def _stood_in_edges(transformed: dict[str, Any], stood_in: set[str]) -> dict[str, set[str]]:
    """A resource that depends on a stood-in resource must still follow what that one depends on."""
    resources = transformed.get("Resources", {})

    def deps(lid: str) -> set[str]:
        resource = resources.get(lid, {})
        depends = resource.get("DependsOn") or []
        return (references(resource.get("Properties", {})) | ({depends} if isinstance(depends, str) else set(depends))) & set(resources)

    edges: dict[str, set[str]] = {}
    for lid in resources:
        if lid in stood_in:
            continue
        seen, todo, reached = set(), [d for d in deps(lid) if d in stood_in], set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for dep in deps(current):
                if dep in stood_in:
                    todo.append(dep)
                else:
                    reached.add(dep)
        if reached:
            edges[lid] = reached
    return edges


def _image_mirror(ctx: Any, parameters: dict[str, str], defaults: dict[str, str]) -> Callable[[str, dict[str, Any]], Any]:
    """Custom::ImageMirror on a redeploy: unchanged sources give what they gave before (CloudFormation does
    not run it again); a changed source is mirrored for real (upstream ghcr.io/mastodon/* is the "Docker
    Hub" stand-in) and the task definitions take `<ecr>/<repository>@<digest>`, as MirrorFunction answers."""
    from tootstack.mirror import mirror_image
    from tootstack_dev.rehearsal.mirror_stage import stand_in
    from tootstack_dev.rehearsal.standins import StandIn

    def factory(logical_id: str, resource: dict[str, Any]) -> Any:
        images = (resource.get("Properties") or {}).get("Images") or []
        sources = {i["Name"]: parameters.get(i["Source"]["Ref"], "") if isinstance(i.get("Source"), dict) else i.get("Source")
                   for i in images}
        last = ctx.extras.setdefault("image_mirror", {"sources": {n: ctx.parameters.get(n, defaults.get(n, "")) for n in sources},
                                                      "attributes": None})
        if sources == last["sources"]:
            return StandIn("unchanged: not run again", ref=f"rehearsal-standin-{logical_id}",
                           attributes=last["attributes"] or stand_in(logical_id, resource).attributes)
        attributes = {}
        for image in images:
            name, source = image["Name"], sources[image["Name"]]
            upstream = source.split("/", 1)[1] if source.startswith("ghcr.io/") else source
            tag = upstream.rsplit(":", 1)[1]
            result = mirror_image(f"{ctx.hub.host_port}/{upstream}", f"{ctx.ecr.host_port}/{image['Repository']}:{tag}",
                                  src_creds=(ctx.hub.username, ctx.hub.password), dest_creds=(ctx.ecr.username, ctx.ecr.password),
                                  plain_http=True)
            attributes[name] = f"{ctx.ecr.host_port}/{image['Repository']}@{result.digest}"
        last.update(sources=sources, attributes=attributes)
        return StandIn("mirrored by its handler's code into the ECR stand-in", ref=f"rehearsal-standin-{logical_id}",
                       attributes=attributes)

    return factory


def sam_deploy(ctx: Any, edit: Callable[[dict[str, Any]], None] | None = None, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """`sam deploy` of template.yaml (changed by `edit`, as a later tootstack release would) with the stack's
    parameters (plus `overrides`). Raises DeployRefused when a custom resource fails it (nothing changed)."""
    region, stack = ctx.region, ctx.stack_name
    cfn, ecs = boto3.client("cloudformation", region_name=region), boto3.client("ecs", region_name=region)
    ssm, autoscaling = boto3.client("ssm", region_name=region), boto3.client("application-autoscaling", region_name=region)
    sam = copy.deepcopy(ctx.sam_template)
    if edit is not None:
        edit(sam)
    parameters = {**ctx.parameters, **(overrides or {})}
    transformed = sam_transform(package(sam, ctx.root, boto3.client("s3", region_name=region), ARTIFACT_BUCKET), region, ACCOUNT_ID)
    previous: dict[str, Any] = ctx.extras.get("stand_ins", {})
    base = default_stand_ins(ctx.redis, region, ctx.stack_name)

    def kept(factory: Callable[[str, dict[str, Any]], Any]) -> Callable[[str, dict[str, Any]], Any]:
        # A resource CloudFormation does not update keeps what it had (the same certificate, secret, counts).
        return lambda lid, resource: previous[lid] if lid in previous else factory(lid, resource)

    factories = {rtype: kept(factory) for rtype, factory in base.items()}
    defaults = {k: str(v.get("Default", "")) for k, v in transformed.get("Parameters", {}).items()}
    resolved = {**defaults, **parameters}
    factories["Custom::ImageMirror"] = _image_mirror(ctx, resolved, defaults)
    old = ctx.extras.setdefault("deployed_template", ctx.cfn_template)
    old_transformed = ctx.extras.get("translated_template", {}).get("Resources", {})
    changed_parameters = {k for k, v in parameters.items() if ctx.parameters.get(k) != v}
    stood_in = {lid for lid, r in transformed["Resources"].items() if r.get("Type", "").startswith("Custom::")} | set(previous)
    edges = _stood_in_edges(transformed, stood_in)

    def attempt(factories: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str], list[dict[str, str]], dict[str, Any]]:
        record: dict[str, Any] = {}
        new, skipped = substitute(copy.deepcopy(transformed), factories, record)
        apply_definition_substitutions(new)
        old_res, new_res = old["Resources"], new["Resources"]
        modified = [lid for lid in new_res if lid in old_res and (new_res[lid] != old_res[lid] or references(new_res[lid]) & changed_parameters)]
        added = [lid for lid in new_res if lid not in old_res]
        return new, plan(old_res, new_res, modified, added, edges), added, skipped, record

    new, order, added, skipped, record = attempt(factories)
    # ServiceCounts runs when its properties change: a task definition it lists was replaced, or its text.
    counts_id = next((lid for lid, r in transformed["Resources"].items() if r.get("Type") == "Custom::ServiceCounts"), None)
    if counts_id is not None:
        props = transformed["Resources"][counts_id].get("Properties", {})
        if references(props) & set(order) or props != old_transformed.get(counts_id, {}).get("Properties"):
            factories["Custom::ServiceCounts"] = base["Custom::ServiceCounts"]
            new, order, added, skipped, record = attempt(factories)
    new_res = new["Resources"]
    if not order and not added and not changed_parameters:
        return {"status": "no changes", "updated": []}

    cluster = ctx.physical("Cluster").split("/")[-1]
    # The deploy guard's code runs here where CloudFormation would invoke DeployGuardFunction: its calls are
    # that function role's (the least-privilege stage checks them).
    guard = boto3.client("lambda", region_name=region).get_function(FunctionName=ctx.physical("DeployGuardFunction"))["Configuration"]
    guard_principal = Principal("function", guard["FunctionName"], guard["Role"])
    task_definitions = [lid for lid in order if new_res[lid]["Type"] == "AWS::ECS::TaskDefinition"]
    if task_definitions or changed_parameters & set(IMAGE_PARAMETERS):
        # VersionGuard: after the task definitions, before any service (its properties list them all).
        with acting_as(guard_principal):
            running, where = deploy_guard.running_version(ecs, ssm, cluster, [CORE, WEB], f"/{stack}/mastodon/version")
        try:
            deploy_guard.check_version({p: resolved[p] for p in IMAGE_PARAMETERS}, running, where)
        except deploy_guard.VersionWouldGoDown as exc:
            raise DeployRefused(f"VersionGuard: {exc}") from None

    bridged: dict[str, Any] = {}

    def before_core(_: str) -> None:
        latest = ecs.describe_task_definition(taskDefinition=f"{stack}-core")["taskDefinition"]["taskDefinitionArn"]
        with acting_as(guard_principal):
            bridged.update(deploy_guard.bridge(ecs, ssm, autoscaling, cluster=cluster, core=CORE, web=WEB, core_task_definition=latest,
                                               record_parameter=f"/{stack}/deploy/bridge", wait=lambda s: None))

    def after_core(_: str) -> None:
        with acting_as(guard_principal):
            bridged.update(deploy_guard.release_bridge(ssm, autoscaling, ecs, cluster=cluster, record_parameter=f"/{stack}/deploy/bridge"))

    fidelity = ctx.aws.cfn_update
    fidelity.extra_edges = edges
    fidelity.hooks = {("before", "CoreService"): before_core, ("after", "CoreService"): after_core}
    try:
        cfn.update_stack(StackName=stack, TemplateBody=json.dumps(new),
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    finally:
        updated = list(fidelity.updated)
        fidelity.hooks, fidelity.extra_edges = {}, {}
    status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    if status != "UPDATE_COMPLETE":
        raise TootstackError(f"stack is {status} after the update")
    ctx.parameters, ctx.extras["deployed_template"] = parameters, new
    ctx.extras["stand_ins"], ctx.extras["translated_template"] = record, copy.deepcopy(transformed)
    return {"status": "updated", "updated": updated, "bridge": bridged}


def serving_gaps(updates: list[dict[str, Any]]) -> list[str]:
    """What in these ECS service updates (LocalAws.ecs_updates) left the site without a task: the core set
    to 0, or the core restarted (stop-first: its old task stops before the new one serves) while no web
    task ran."""
    gaps = []
    for update in updates:
        if update["service"] != CORE:
            continue
        if update["desired"] < 1:
            gaps.append(f"the core was set to {update['desired']} tasks")
        if update["task_definition"] != update["previous"] and update["running"].get(WEB, 0) < 1:
            gaps.append("the core restarted (stop-first) with no web task serving")
    return gaps


# --- the checks after each step ---------------------------------------------------------------------------
class Year:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.region, self.stack = ctx.region, ctx.stack_name
        self.ecs = boto3.client("ecs", region_name=self.region)
        self.ssm = boto3.client("ssm", region_name=self.region)
        self.cluster = ctx.physical("Cluster").split("/")[-1]
        upgrade = ctx.extras.get("upgrade_output")
        if not upgrade:
            raise TootstackError("the upgrade stage has not run: the redeploy stage continues the year after it")
        self.upgrade = upgrade
        self.version = self.recorded()
        self.upgraded = set(self.images(self.service(CORE)["taskDefinition"]))
        if not all("@sha256:" in i for i in self.upgraded):
            raise TootstackError(f"the core does not run pinned digests after the upgrade: {sorted(self.upgraded)}")
        self.lines: list[str] = []

    def service(self, name: str) -> dict[str, Any]:
        return self.ecs.describe_services(cluster=self.cluster, services=[name])["services"][0]

    def services(self) -> list[dict[str, Any]]:
        arns = self.ecs.list_services(cluster=self.cluster)["serviceArns"]
        return [s for s in self.ecs.describe_services(cluster=self.cluster, services=arns)["services"] if s["serviceName"] != "crashloop-rehearsal"]

    def images(self, task_definition: str) -> list[str]:
        return [c["image"] for c in self.ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]["containerDefinitions"]]

    def recorded(self) -> str:
        return self.ssm.get_parameter(Name=f"/{self.stack}/mastodon/version")["Parameter"]["Value"]

    def check(self, step: str, updates_from: int, detail: str) -> None:
        from tootstack.upgrade.version import parse_version

        core = self.service(CORE)
        if core["desiredCount"] < 1 or core["runningCount"] < 1:
            raise TootstackError(f"after {step}: the core runs no task (desired {core['desiredCount']}, running {core['runningCount']})")
        problems = serving_gaps(self.ctx.aws.ecs_updates[updates_from:])
        if problems:
            raise TootstackError(f"during {step}: {'; '.join(problems)}")
        stale = {}
        for service in self.services():
            off = [i for i in self.images(service["taskDefinition"]) if i not in self.upgraded]
            if off:
                stale[service["serviceName"]] = off
        for family in ("toolbox", "admin"):
            off = [i for i in self.images(f"{self.stack}-{family}") if i not in self.upgraded]
            if off:
                stale[f"{family} family"] = off
        if stale:
            raise TootstackError(f"after {step}: not on the upgraded digests: {stale}")
        recorded = self.recorded()
        if parse_version(recorded) < parse_version(self.version):
            raise TootstackError(f"after {step}: the recorded version went down from {self.version} to {recorded}")
        self.lines.append(f"{step}: {detail}")
        self.ctx.progress(f"[{NAME}] {step}: {detail}")

    def core_restarts(self, updates_from: int) -> int:
        return sum(1 for u in self.ctx.aws.ecs_updates[updates_from:] if u["service"] == CORE and u["task_definition"] != u["previous"])


def _next_release(sam: dict[str, Any]) -> None:
    """What a later tootstack release brings: a changed environment in every task definition."""
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            for container in resource["Properties"]["ContainerDefinitions"]:
                container.setdefault("Environment", []).append({"Name": "TOOTSTACK_RELEASE", "Value": "next"})


def run(ctx: Any) -> str:
    year = Year(ctx)
    ecs_updates = ctx.aws.ecs_updates

    start = len(ecs_updates)
    first = sam_deploy(ctx)
    year.check("sam deploy (same template and parameters)", start,
               f"{first['status']}; services keep their counts and the upgraded images")

    start = len(ecs_updates)
    runs: list[Any] = []

    def toolbox(run: Any) -> TaskResult:
        runs.append(run)
        return TaskResult(0, ["database: mastodon", " Status   Migration ID    Migration Name", "   up     20250101000000  Rehearsal"])

    with toolbox_behavior(ctx, toolbox):
        oneoff = ctx.aws.run_state_machine(ctx.physical("RunOneOffStateMachine"), {"command": ["rails", "db:migrate:status"]}, timeout=30)
    if oneoff.status != "SUCCEEDED" or len(runs) != 1:
        raise TootstackError(f"one-off rails db:migrate:status: {oneoff.status} {oneoff.error} {oneoff.cause}")
    off = [i for i in year.images(runs[0].task_definition_arn) if i not in year.upgraded]
    if off:
        raise TootstackError(f"the one-off task ran {off}, not the upgraded image")
    year.check("one-off rails db:migrate:status", start, "ran the upgraded toolbox revision")

    start = len(ecs_updates)
    from tootstack_dev.rehearsal.first_boot_stage import route_redis_functions

    rotation = route_redis_functions(ctx)
    lambda_arn = boto3.client("lambda", region_name=ctx.region).get_function(FunctionName=rotation)["Configuration"]["FunctionArn"]
    boto3.client("secretsmanager", region_name=ctx.region).rotate_secret(
        SecretId=ctx.physical("RedisSecret"), ClientRequestToken=str(uuid.uuid4()), RotationLambdaARN=lambda_arn,
        RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=True)
    year.check("Redis rotation", start, "running services redeployed on their own revisions")

    from tootstack.upgrade.version import parse_version, version_of_image

    start = len(ecs_updates)
    hint, overrides = year.upgrade.get("samconfig", ""), {}
    deployed = ctx.parameters.get("MastodonImage") or str(ctx.cfn_template["Parameters"]["MastodonImage"].get("Default", ""))
    template_version = version_of_image(deployed)
    if template_version and parse_version(template_version) < parse_version(year.version):
        before = {s["serviceName"]: s["taskDefinition"] for s in year.services()}
        try:
            sam_deploy(ctx, edit=_next_release)
            raise TootstackError(f"a deploy of {template_version} images over the upgraded {year.version} was not refused")
        except DeployRefused as refused:
            reason = str(refused)
        if not hint or hint not in reason:
            raise TootstackError(f"the refusal does not name what to set ({hint!r}): {reason}")
        if {s["serviceName"]: s["taskDefinition"] for s in year.services()} != before:
            raise TootstackError("a refused deploy changed a service")
        year.check("sam deploy of the next release (same parameters)", start,
                   f"refused by VersionGuard, nothing changed; it names: {hint}")
        start = len(ecs_updates)
        overrides = dict(item.split("=", 1) for item in shlex.split(hint))
    counts = {s["serviceName"]: s["desiredCount"] for s in year.services()}
    applied = sam_deploy(ctx, edit=_next_release, overrides=overrides)
    after = {s["serviceName"]: s["desiredCount"] for s in year.services()}
    if applied["status"] != "updated" or after != counts:
        raise TootstackError(f"deploy with the upgrade's values: {applied['status']}, counts {counts} -> {after}")
    if year.core_restarts(start) != 1 or applied["bridge"].get("Released") != WEB:
        raise TootstackError(f"the core restart was not bridged by a web task: {applied['bridge']}")
    year.check("sam deploy with the values the upgrade named" if overrides else "sam deploy of the next release", start,
               f"updated {len(applied['updated'])} resources; counts kept {after}; core restart bridged by a web task, "
               "web minimum given back")

    start = len(ecs_updates)
    with toolbox_behavior(ctx, lambda run: TaskResult(0, ["Removed 0 media attachments"])):
        maintenance = ctx.aws.run_state_machine(ctx.physical("MaintenanceStateMachine"), {}, timeout=30)
    if maintenance.status != "SUCCEEDED" or (maintenance.output or {}).get("status") != "done":
        raise TootstackError(f"maintenance after the year: {maintenance.status} {maintenance.output}")
    year.check("maintenance", start, "ran (not skipped)")
    return "; ".join(year.lines) + f"; recorded version stayed {year.recorded()}"

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
custom resources moto does not run are sent CloudFormation's request through their deployed functions
(DeployGuardFunction: ServiceCounts before the services, VersionGuard before any service moves, CoreBridge
before the core, CoreBridgeRelease after it; MirrorFunction: ImageMirror when its sources change), each
answering on its ResponseURL (tootstack_dev.rehearsal.custom_resources), and moto's update_stack applies
the rest in dependency order (tootstack_dev.local.cfn_update).
"""

from __future__ import annotations

import copy
import json
import shlex
import uuid
from typing import Any, Callable

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.local.aws import TaskResult
from tootstack_dev.local.cfn_update import plan, references
from tootstack_dev.rehearsal.day2_common import toolbox_behavior
from tootstack_dev.rehearsal.custom_resources import CloudFormationRequests, CustomResourceFailed, resolved_properties
from tootstack_dev.rehearsal.deploy import apply_definition_substitutions, translate
from tootstack_dev.rehearsal.standins import StandIn, default_stand_ins, substitute

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


def _via_hub(ctx: Any, source: str) -> str:
    """The "Docker Hub" stand-in serves the upstream registries' repositories (ghcr.io/mastodon/* and Docker
    Hub's): a source image as the rehearsal's network reaches it."""
    upstream = source.split("/", 1)[1] if source.split("/", 1)[0] in ("ghcr.io", "docker.io") else source
    return f"{ctx.hub.host_port}/{upstream}"


def sam_deploy(ctx: Any, edit: Callable[[dict[str, Any]], None] | None = None, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """`sam deploy` of template.yaml (changed by `edit`, as a later tootstack release would) with the stack's
    parameters (plus `overrides`). The custom resources run through their deployed functions, as CloudFormation
    invokes them (tootstack_dev.rehearsal.custom_resources). Raises DeployRefused when one fails the deploy
    (nothing changed)."""
    with CloudFormationRequests(ctx) as cloudformation:
        return _sam_deploy(ctx, cloudformation, edit, overrides)


def _sam_deploy(ctx: Any, cloudformation: CloudFormationRequests, edit: Callable[[dict[str, Any]], None] | None,
                overrides: dict[str, str] | None) -> dict[str, Any]:
    region, stack = ctx.region, ctx.stack_name
    cfn = boto3.client("cloudformation", region_name=region)
    sam = copy.deepcopy(ctx.sam_template)
    if edit is not None:
        edit(sam)
    parameters = {**ctx.parameters, **(overrides or {})}
    transformed = translate(ctx, sam)
    previous: dict[str, Any] = ctx.stand_ins
    base = default_stand_ins(ctx.redis, region, ctx.stack_name)
    physical_now = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]}

    def physical(name: str) -> str | None:   # what a Ref to a deployed (or stood-in) resource gives now
        return physical_now.get(name) or (previous[name].ref if name in previous else None)

    def properties(lid: str, template: dict[str, Any] = transformed, values: dict[str, str] = parameters,
                   ref: Callable[[str], str | None] = physical, attribute: Callable[[str, str], Any] | None = None) -> Any:
        return resolved_properties(template, values, region, stack, lid, ref, attribute)

    def kept(factory: Callable[[str, dict[str, Any]], Any]) -> Callable[[str, dict[str, Any]], Any]:
        # A resource CloudFormation does not update keeps what it had (the same certificate, secret, counts).
        return lambda lid, resource: previous[lid] if lid in previous else factory(lid, resource)

    answered: dict[str, Any] = {}   # each custom resource runs once per deploy, however often the plan is made

    def through_function(lid: str, resource: dict[str, Any]) -> Any:
        if lid not in answered:
            props = properties(lid)
            if resource["Type"] == "Custom::ImageMirror":   # the upstream registries, as the rehearsal reaches them
                props["Images"] = [dict(i, Source=_via_hub(ctx, i["Source"])) for i in props.get("Images", [])]
            before = properties(lid, ctx.translated_template, ctx.parameters) \
                if lid in ctx.translated_template.get("Resources", {}) else None
            data = cloudformation.request(lid, resource, props, "Update" if before is not None else "Create", before)
            if resource["Type"] == "Custom::ServiceCounts":
                data = {k: int(v) for k, v in data.items()}
            answered[lid] = StandIn(f"answered by its function ({resource['Type']}): {data}", ref=f"{stack}-{lid}",
                                    attributes=data)
        return answered[lid]

    factories = {rtype: kept(factory) for rtype, factory in base.items()}
    mirror_id = next((lid for lid, r in transformed["Resources"].items() if r.get("Type") == "Custom::ImageMirror"), None)
    if mirror_id is not None and mirror_id in ctx.translated_template.get("Resources", {}) and \
            properties(mirror_id) != properties(mirror_id, ctx.translated_template, ctx.parameters):
        factories["Custom::ImageMirror"] = through_function   # its sources changed: CloudFormation runs it again
    old = ctx.cfn_template
    old_transformed = ctx.translated_template.get("Resources", {})
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
            factories["Custom::ServiceCounts"] = through_function
            new, order, added, skipped, record = attempt(factories)
    new_res = new["Resources"]
    if not order and not added and not changed_parameters:
        return {"status": "no changes", "updated": []}

    guard_ids = {r["Type"]: lid for lid, r in transformed["Resources"].items()
                 if r.get("Type") in ("Custom::VersionGuard", "Custom::CoreBridge", "Custom::CoreBridgeRelease")}
    task_definitions = [lid for lid in order if new_res[lid]["Type"] == "AWS::ECS::TaskDefinition"]
    if "Custom::VersionGuard" in guard_ids and (task_definitions or changed_parameters & set(IMAGE_PARAMETERS)):
        # VersionGuard: after the task definitions, before any service (its properties list them all). Run
        # before the update: a refusal rolls the update back, which moto's update_stack cannot.
        try:
            through_function(guard_ids["Custom::VersionGuard"], transformed["Resources"][guard_ids["Custom::VersionGuard"]])
        except CustomResourceFailed as exc:
            raise DeployRefused(f"VersionGuard: {exc}") from None

    fidelity = ctx.aws.cfn_update
    bridged: dict[str, Any] = {}

    def during_update(lid: str) -> dict[str, Any]:
        # the properties as CloudFormation resolves them at this point of the update (new revisions included)
        def now(name: str) -> str | None:
            found = fidelity.resources_map[name] if fidelity.resources_map is not None and name in fidelity.resources_map else None
            return getattr(found, "physical_resource_id", None) or physical(name)

        props = properties(lid, ref=now, attribute=lambda name, attr: bridged.get(attr, f"{stack}-{name}-{attr}"))
        return cloudformation.request(lid, transformed["Resources"][lid], props, "Update")

    hooks = {}
    if "Custom::CoreBridge" in guard_ids:
        hooks[("before", "CoreService")] = lambda _: bridged.update(during_update(guard_ids["Custom::CoreBridge"]))
    if "Custom::CoreBridgeRelease" in guard_ids:
        hooks[("after", "CoreService")] = lambda _: bridged.update(during_update(guard_ids["Custom::CoreBridgeRelease"]))
    fidelity.extra_edges, fidelity.hooks = edges, hooks
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
    ctx.parameters, ctx.cfn_template = parameters, new
    ctx.stand_ins, ctx.translated_template = record, copy.deepcopy(transformed)
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
        upgrade = ctx.upgrade_output
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

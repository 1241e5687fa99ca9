"""Rehearsal stage "deploy": template.yaml -> SAM transform offline -> moto CloudFormation.

Runs inside the harness's moto context (ctx.aws). Stand-ins (ctx.redis, registries) are already up, so
references to resources moto skips point at them. After CREATE_COMPLETE, every deployed Lambda function
is routed to its real handler in-process, with the environment CloudFormation resolved for it.
"""

from __future__ import annotations

import copy
import json
import tomllib
from typing import Any

import boto3

from tootstack.errors import InvalidInput, TootstackError
from tootstack_dev.local.template import local_functions
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.cost.template_eval import TemplateEvaluator
from tootstack_dev.rehearsal.standins import default_stand_ins, substitute
from tootstack_dev.rehearsal.translate import package, sam_transform

NAME = "deploy"
ARTIFACT_BUCKET = "tootstack-rehearsal-artifacts"
ACCOUNT_ID = "123456789012"  # moto's default account
REHEARSAL_DOMAIN = "social.rehearsal.test"


def run(ctx: RehearsalContext) -> str:
    stack, substituted, evaluator = create_stack(ctx)
    ctx.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    cfn = boto3.client("cloudformation", region_name=ctx.region)
    resources = cfn.list_stack_resources(StackName=ctx.stack_name)["StackResourceSummaries"]
    ctx.physical_ids = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    # Stand-ins that are real moto resources (secrets, certificates) are addressable like deployed ones.
    ctx.physical_ids.update({s["logical_id"]: s["ref"] for s in ctx.skipped if s.get("ref", "").startswith("arn:")})
    ctx.resources = [
        {"logical_id": r["LogicalResourceId"], "type": r["ResourceType"], "physical_id": r["PhysicalResourceId"]}
        for r in resources
    ]
    scaled = register_scalable_targets(ctx, evaluator)
    machines = _check_state_machines(ctx)
    routed = route_functions(ctx)
    return (
        f"stack CREATE_COMPLETE: {len(resources)} resources created, {len(ctx.skipped)} stood in for, "
        f"{routed} Lambda functions routed to their real handlers, {machines} state machines deployed "
        f"({substituted} with DefinitionSubstitutions applied)" + (f", {scaled} ECS scalable targets registered" if scaled else "")
    )


def create_stack(ctx: RehearsalContext) -> tuple[dict[str, Any], int, TemplateEvaluator]:
    """Translate template.yaml offline, put stand-ins where moto has none, create the stack in moto with
    the rehearsal's parameters. Returns (the stack, how many state machines got their substitutions, the
    template's evaluator for these parameters); a stack that is not CREATE_COMPLETE is an error with reasons."""
    ctx.progress("translating template.yaml (SAM transform, offline packaging)")
    boto3.client("s3", region_name=ctx.region).create_bucket(Bucket=ARTIFACT_BUCKET)
    transformed = translate(ctx, ctx.sam_template)
    conditional = {lid: r["Condition"] for lid, r in transformed.get("Resources", {}).items() if "Condition" in r}
    ctx.stand_ins = {}
    ctx.translated_template = copy.deepcopy(transformed)   # substitute() edits `transformed` in place
    cfn_template, ctx.skipped = substitute(transformed, default_stand_ins(ctx.redis, ctx.region, ctx.stack_name),
                                           ctx.stand_ins)
    substituted = apply_definition_substitutions(cfn_template)
    # moto's CloudFormation leaves `{{resolve:secretsmanager:...}}` as literal text (RDS gets the reference
    # string, which nothing can read back); resolving it here would put the password into moto's stored
    # template, so it is left alone on purpose.
    ctx.cfn_template = cfn_template
    ctx.parameters = stack_parameters(ctx)
    _mirror_credentials_parameter(ctx)
    # Report only the stand-ins of resources these parameters deploy (a false Condition creates nothing).
    evaluator = TemplateEvaluator(ctx.sam_template, ctx.parameters)   # the template's conditions, for these parameters
    ctx.skipped = [s for s in ctx.skipped if s["logical_id"] not in conditional or evaluator.condition(conditional[s["logical_id"]])]

    ctx.progress(f"creating stack {ctx.stack_name} in moto ({len(cfn_template['Resources'])} resources)")
    cfn = boto3.client("cloudformation", region_name=ctx.region)
    cfn.create_stack(
        StackName=ctx.stack_name,
        TemplateBody=json.dumps(cfn_template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in ctx.parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = cfn.describe_stacks(StackName=ctx.stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        reasons = [
            f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
            for e in cfn.describe_stack_events(StackName=ctx.stack_name)["StackEvents"]
            if e["ResourceStatus"].endswith("FAILED")
        ]
        raise TootstackError(f"stack is {stack['StackStatus']}: {'; '.join(reasons) or 'no reason given'}")
    return stack, substituted, evaluator


def translate(ctx: RehearsalContext, sam: dict[str, Any]) -> dict[str, Any]:
    """`sam` (template.yaml as parsed, or a later release's) as CloudFormation gets it from `sam deploy`: local
    code zipped into the artifact bucket of the emulated S3, then the SAM transform, offline."""
    s3 = boto3.client("s3", region_name=ctx.region)
    return sam_transform(package(sam, ctx.root, s3, ARTIFACT_BUCKET), ctx.region, ACCOUNT_ID)


def _mirror_credentials_parameter(ctx: RehearsalContext) -> None:
    """Deploy with registry credentials configured (MirrorSourceCredentialsSecretArn), as an operator with
    Docker Hub credentials does: the stages that mirror with credentials then run under the grants the
    template makes for that secret (the least-privilege stage checks them). The stages fill in the value."""
    declared = ctx.cfn_template.get("Parameters", {})
    if "MirrorSourceCredentialsSecretArn" not in declared or ctx.parameters.get("MirrorSourceCredentialsSecretArn"):
        return
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    arn = sm.create_secret(Name=f"{ctx.stack_name}/rehearsal/mirror-credentials", SecretString="{}")["ARN"]
    ctx.parameters["MirrorSourceCredentialsSecretArn"] = arn


def register_scalable_targets(ctx: RehearsalContext, evaluator: TemplateEvaluator) -> int:
    """moto's CloudFormation skips AWS::ApplicationAutoScaling::ScalableTarget; register the stack's ECS
    targets (`service/${Cluster}/${<Service>.Name}`) in moto's Application Auto Scaling with the template's
    capacities, as CloudFormation would, so what reads them (the upgrade's bridge) sees the deployed stack."""
    import re

    targets = [s["logical_id"] for s in ctx.skipped if s["type"] == "AWS::ApplicationAutoScaling::ScalableTarget"]
    if not targets:
        return 0
    evaluated = evaluator.resources()
    ecs = boto3.client("ecs", region_name=ctx.region)
    autoscaling = boto3.client("application-autoscaling", region_name=ctx.region)
    cluster = ctx.physical("Cluster").split("/")[-1]
    for logical_id in targets:
        props = evaluated[logical_id]["Properties"]
        raw = ctx.sam_template["Resources"][logical_id]["Properties"]["ResourceId"]
        service_id = re.search(r"\$\{(\w+)\.Name\}", json.dumps(raw))
        if props.get("ServiceNamespace") != "ecs" or service_id is None:
            raise TootstackError(f"{logical_id}: only ECS service scalable targets are registered in the rehearsal")
        service = ecs.describe_services(cluster=cluster, services=[ctx.physical(service_id.group(1))])["services"][0]["serviceName"]
        autoscaling.register_scalable_target(
            ServiceNamespace="ecs", ResourceId=f"service/{cluster}/{service}", ScalableDimension=props["ScalableDimension"],
            MinCapacity=int(props["MinCapacity"]), MaxCapacity=int(props["MaxCapacity"]))
    return len(targets)


def apply_definition_substitutions(template: dict[str, Any]) -> int:
    """Do what CloudFormation does with a state machine's DefinitionSubstitutions and moto 5.2 does not
    (it deploys the definition with `${...}` left in). The definition becomes an Fn::Join of its literal
    text and the substitutions' values (not an Fn::Sub: moto's Fn::Sub turns JSONPath's `$$` into `$`).
    `${Name}` that is not a substitution stays literal, as in CloudFormation. Returns how many changed."""
    import re

    changed = 0
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        if resource.get("Type") != "AWS::StepFunctions::StateMachine" or not props.get("DefinitionSubstitutions"):
            continue
        text = props.get("DefinitionString")
        if isinstance(text, dict) and "Fn::Join" in text:
            separator, parts = text["Fn::Join"]
            if not all(isinstance(part, str) for part in parts):
                continue  # intrinsics inside the definition itself: leave it to moto
            text = separator.join(parts)
        if not isinstance(text, str):
            continue
        names = props.pop("DefinitionSubstitutions")
        pieces: list[Any] = []
        for index, piece in enumerate(re.split(r"\$\{([A-Za-z0-9_]+)\}", text)):
            if index % 2 == 0:
                pieces.append(piece)
            elif piece in names:
                pieces.append(names[piece])
            else:
                pieces.append("${" + piece + "}")
        props["DefinitionString"] = {"Fn::Join": ["", pieces]}
        changed += 1
    return changed


def _check_state_machines(ctx: RehearsalContext) -> int:
    """Every deployed state machine is valid JSON with none of its DefinitionSubstitutions left unapplied."""
    sfn = boto3.client("stepfunctions", region_name=ctx.region)
    count = 0
    for lid, resource in ctx.sam_template["Resources"].items():
        if resource["Type"] not in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine") or lid not in ctx.physical_ids:
            continue
        definition = sfn.describe_state_machine(stateMachineArn=ctx.physical_ids[lid])["definition"]
        json.loads(definition)
        names = resource.get("Properties", {}).get("DefinitionSubstitutions") or {}
        left = sorted(name for name in names if "${" + name + "}" in definition)
        if left:
            raise TootstackError(f"state machine {lid} deployed with placeholders {left}")
        count += 1
    return count


def stack_parameters(ctx: RehearsalContext) -> dict[str, str]:
    """Values for the template's parameters: samconfig.toml's [rehearsal] overrides, a moto hosted zone
    for zone ids, a rehearsal domain; every other parameter keeps its default. A parameter with no
    default and no rehearsal value is an error that names it."""
    overrides = _samconfig_overrides(ctx)
    declared = ctx.cfn_template.get("Parameters", {})
    values: dict[str, str] = {}
    zone_id = None
    for name, spec in declared.items():
        if name in overrides:
            values[name] = overrides[name]
        elif spec.get("Type") == "AWS::Route53::HostedZone::Id":
            zone_id = zone_id or _hosted_zone(ctx.region)
            values[name] = zone_id
        elif "Default" not in spec and "domain" in name.lower():
            values[name] = REHEARSAL_DOMAIN
        elif "Default" not in spec:
            raise InvalidInput(
                f"parameter {name} has no default: add it to parameter_overrides in samconfig.toml [rehearsal.deploy.parameters]"
            )
    values.update({k: v for k, v in ctx.parameters.items() if k in declared})
    return values


def _samconfig_overrides(ctx: RehearsalContext) -> dict[str, str]:
    path = ctx.root / "samconfig.toml"
    if not path.is_file():
        return {}
    config = tomllib.loads(path.read_text())
    raw = config.get("rehearsal", {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    if isinstance(raw, str):
        import shlex

        raw = shlex.split(raw)
    return dict(item.split("=", 1) for item in raw)


def _hosted_zone(region: str) -> str:
    route53 = boto3.client("route53", region_name=region)
    zone = route53.create_hosted_zone(Name=REHEARSAL_DOMAIN, CallerReference="tootstack-rehearsal")
    return zone["HostedZone"]["Id"].rsplit("/", 1)[-1]


def route_functions(ctx: RehearsalContext) -> int:
    """Point each deployed Lambda function at its real handler, with its deployed environment."""
    lambda_client = boto3.client("lambda", region_name=ctx.region)
    functions = local_functions(ctx.sam_template, ctx.root)
    for logical_id, local_fn in functions.items():
        physical = ctx.physical_ids.get(logical_id)
        if not physical:
            continue
        config = lambda_client.get_function_configuration(FunctionName=physical)
        environment: dict[str, Any] = config.get("Environment", {}).get("Variables", {})
        ctx.aws.route_function(physical, local_fn, environment=environment)
    return len([f for f in functions if f in ctx.physical_ids])

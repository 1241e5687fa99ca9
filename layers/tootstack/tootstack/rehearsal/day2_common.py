"""Shared by the "maintenance" and "upgrade" rehearsal stages: the deployed state machine, runnable.

moto's CloudFormation neither applies DefinitionSubstitutions nor keeps the machine under its physical
id, so the stage creates it from the same statemachines/*.asl.json file with the template's
substitutions resolved against the deployed resources (the file is unchanged).
"""

from __future__ import annotations

import re
from typing import Any

import boto3

from tootstack.errors import TootstackError


def state_machine(ctx: Any, logical_id: str) -> str:
    resource = ctx.sam_template.get("Resources", {}).get(logical_id)
    if not resource or logical_id not in ctx.physical_ids:
        raise TootstackError(f"{logical_id} is not in the deployed stack")
    props = resource["Properties"]
    substitutions = {key: _resolve(ctx, value) for key, value in props.get("DefinitionSubstitutions", {}).items()}
    return ctx.aws.create_state_machine_from_file(ctx.root / props["DefinitionUri"], f"{ctx.stack_name}-{logical_id}-rehearsal",
                                                   substitutions)


def _resolve(ctx: Any, value: Any) -> str:
    region = ctx.region
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        pseudo = {"AWS::StackName": ctx.stack_name, "AWS::Region": region, "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
        return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo.get(m.group(1)) or ctx.physical_ids[m.group(1)], value["Fn::Sub"])
    if "Ref" in value:
        physical = ctx.physical_ids[value["Ref"]]
        if value["Ref"].endswith("SecurityGroup") and not physical.startswith("sg-"):
            ec2 = boto3.client("ec2", region_name=region)
            groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [physical]}])["SecurityGroups"]
            return groups[0]["GroupId"] if groups else physical
        return physical
    if "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        logical, attribute = target.split(".", 1) if isinstance(target, str) else target
        physical = ctx.physical_ids[logical]
        if attribute == "Arn" and physical.startswith("arn:"):
            return physical
        kind = ctx.sam_template["Resources"][logical]["Type"]
        if attribute == "Arn" and kind == "AWS::ECS::Cluster":
            return boto3.client("ecs", region_name=region).describe_clusters(clusters=[physical])["clusters"][0]["clusterArn"]
        if attribute == "Arn" and kind == "AWS::Serverless::Function":
            return boto3.client("lambda", region_name=region).get_function(FunctionName=physical)["Configuration"]["FunctionArn"]
    raise TootstackError(f"cannot resolve the definition substitution {value!r} in a rehearsal")


def restore_behavior(ctx: Any, family: str, previous: Any) -> None:
    behaviors = getattr(ctx.aws.tasks, "_behaviors", {})
    if previous is None:
        behaviors.pop(family, None)
    else:
        ctx.aws.tasks.on(family, previous)


def fill_missing_secret_keys(ctx: Any, task_definition: str) -> dict[str, str]:
    """ECS cannot start a task whose `secrets` name a JSON key its secret lacks. When no first-boot stage
    filled the stack's secrets before this stage, give each missing key a random placeholder (never
    overwriting a value) so the toolbox task can start. Returns the original values: put them back with
    `restore_secrets` when the stage ends."""
    import json
    import secrets as random_source

    sm = boto3.client("secretsmanager", region_name=ctx.region)
    taskdef = boto3.client("ecs", region_name=ctx.region).describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    wanted: dict[str, set[str]] = {}
    for container in taskdef.get("containerDefinitions", []):
        for entry in container.get("secrets", []):
            parts = entry["valueFrom"].split(":")
            if len(parts) >= 8 and parts[7] and ":secretsmanager:" in entry["valueFrom"]:
                wanted.setdefault(":".join(parts[:7]), set()).add(parts[7])
    originals: dict[str, str] = {}
    for secret_id, keys in wanted.items():
        current = sm.get_secret_value(SecretId=secret_id)["SecretString"]
        try:
            document = json.loads(current)
        except (ValueError, TypeError):
            document = {}
        absent = sorted(k for k in keys if k not in document)
        if absent:
            originals[secret_id] = current
            document.update({k: f"rehearsal-{random_source.token_hex(16)}" for k in absent})
            sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(document))
    return originals


def restore_secrets(ctx: Any, originals: dict[str, str]) -> None:
    sm = boto3.client("secretsmanager", region_name=ctx.region)
    for secret_id, value in originals.items():
        sm.put_secret_value(SecretId=secret_id, SecretString=value)

"""Rehearsal stage "least-privilege": every AWS call the stack's functions, state machines and task
execution roles made during the rehearsal, evaluated against their roles' deployed policies
(tootstack_dev.iam). A call its role does not allow fails the stage; the statements no call used are listed in
the report (`iam.unused_statements`), each with its justification from template.yaml's Metadata."""

from __future__ import annotations

from typing import Any

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.iam.check import check_calls
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.rehearsal.deploy import ACCOUNT_ID

NAME = "least-privilege"


def task_roles(ctx: RehearsalContext) -> dict[tuple[str, str], str]:
    """(task definition family, "executionRoleArn" | "taskRoleArn") -> role ARN, from the translated
    template (moto's CloudFormation does not keep a task definition's roles)."""
    iam = boto3.client("iam", region_name=ctx.region)
    roles: dict[tuple[str, str], str] = {}
    for logical_id, resource in ctx.cfn_template.get("Resources", {}).items():
        physical = ctx.physical_ids.get(logical_id, "")
        if resource.get("Type") != "AWS::ECS::TaskDefinition" or "task-definition/" not in physical:
            continue
        family = physical.split("task-definition/", 1)[1].rsplit(":", 1)[0]
        for prop, key in (("ExecutionRoleArn", "executionRoleArn"), ("TaskRoleArn", "taskRoleArn")):
            value: Any = resource.get("Properties", {}).get(prop)
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                role_logical = value["Fn::GetAtt"][0] if isinstance(value["Fn::GetAtt"], list) else value["Fn::GetAtt"].split(".")[0]
                name = ctx.physical_ids.get(role_logical)
                if name:
                    roles[(family, key)] = iam.get_role(RoleName=name)["Role"]["Arn"]
    return roles


def run(ctx: RehearsalContext) -> str:
    roles = task_roles(ctx)
    report = check_calls(list(ctx.aws.iam_calls.calls), ctx.region, ACCOUNT_ID, ctx.stack_name, ctx.sam_template,
                         lambda family, which: roles.get((family, which)), ctx.cfn_template)
    ctx.iam = report.as_dict()
    if report.unallowed:
        lines = "; ".join(f"{u['role']} {u['action']} on {u['resource']}: {u['reason']}" for u in report.unallowed[:20])
        raise TootstackError(f"{len(report.unallowed)} call(s) their role does not allow: {lines}")
    unjustified = [u for u in report.unused if not u["justification"]]
    stale = report.stale_justifications
    return (
        f"{len(report.distinct_calls)} distinct (role, action, resource) calls by {report.roles_called} roles, all allowed "
        f"by their role's policies; {len(report.unused)} statements no call used"
        + (f" ({len(unjustified)} without a justification in template.yaml: {', '.join(u['statement'] for u in unjustified)})" if unjustified else " (each justified in template.yaml)")
        + (f"; justified as unused but used: {', '.join(stale)}" if stale else "")
    )

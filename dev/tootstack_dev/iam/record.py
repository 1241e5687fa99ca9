"""Record the AWS API calls each role makes in the local emulation.

Every botocore call goes through `BaseClient._make_api_call`; the recorder wraps it once, for every client
of every session. A call is recorded only when the calling thread acts as a principal: the harness says who
runs (`acting_as`): a routed Lambda handler acts as its function's role, a Step Functions execution as its
state machine's role, the ECS task simulator as the task's execution role while it resolves secrets and
writes logs. Calls made by the harness and the tests themselves (no principal) are not recorded.

What is kept of a call: the principal, the IAM action, and the call's *identifying* parameters only (names,
ARNs, ids; an allow-list), never values such as SecretString or Value, so a record can be written to a
report file. Resources (ARNs) are derived from them when the calls are evaluated (`tootstack_dev.iam.check`),
while the emulation is still up to resolve names to ARNs.

Calls that AWS makes on a role's behalf without an SDK call in our process (Step Functions' `.sync` rule
and DescribeTasks, ECS passing the task roles, the ECS agent fetching secrets and pulling images) are
recorded explicitly by the harness with `record`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

# botocore's signing name -> IAM service prefix, where they differ.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
# botocore operation -> IAM action, where they differ (service reference of each service).
_ACTION_ALIAS = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "lambda:InvokeAsync": "lambda:InvokeFunction",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
}
# Calls that need no permission (AWS answers them for any principal).
_UNAUTHORISED = {"sts:GetCallerIdentity"}

# The request parameters that identify what a call acts on (or feed a condition key). Nothing else of a
# request is kept: no values.
IDENTIFYING = frozenset({
    "SecretId", "Name", "Names", "Path", "FunctionName", "Qualifier",
    "cluster", "clusters", "service", "services", "task", "tasks", "taskDefinition", "family", "resourceArn",
    "repositoryName", "registryId", "registryIds",
    "logGroupName", "logStreamName", "logGroupNamePrefix", "logGroupIdentifier",
    "UserId", "UserIds", "UserGroupId", "ReplicationGroupId", "UserIdsToAdd", "UserIdsToRemove",
    "stateMachineArn", "executionArn",
    "ServiceNamespace", "ResourceId", "ResourceIds", "ScalableDimension", "PolicyName",
    "Bucket", "Key", "TopicArn", "AlarmNames", "AlarmName", "Namespace", "EmailIdentity", "Identity", "Source",
    "ResourceArn", "ResourceARN", "RoleArn", "RoleName", "Rule", "Ids", "GroupIds", "SubnetIds",
    "TableName", "UserName", "createAction", "StackName",
    "role", "which", "passed_to",  # explicit records (iam:PassRole)
})


@dataclass(frozen=True)
class Principal:
    kind: str        # "function" | "state-machine" | "task-execution"
    name: str        # function name, state machine ARN, task definition family
    role_arn: str    # the IAM role the call is made with


@dataclass
class Call:
    principal: Principal
    action: str                       # "secretsmanager:GetSecretValue"
    params: dict[str, Any]            # identifying parameters only
    region: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.principal.kind, "name": self.principal.name, "role_arn": self.principal.role_arn,
                "action": self.action, "params": self.params, "region": self.region}


_local = threading.local()


def current() -> Principal | None:
    """The principal this thread acts as (a thread started while acting inherits it)."""
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    return getattr(threading.current_thread(), "_tootstack_principal", None)


@contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Calls made by this thread inside the block are `principal`'s (None: the harness's, not recorded)."""
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(principal)
    try:
        yield
    finally:
        stack.pop()


def _identifying(params: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in params.items():
        if key not in IDENTIFYING:
            continue
        if isinstance(value, str):
            kept[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            kept[key] = list(value)
    return kept


def iam_action(signing_name: str, operation: str) -> str:
    action = f"{_IAM_PREFIX.get(signing_name, signing_name)}:{operation}"
    return _ACTION_ALIAS.get(action, action)


@dataclass
class CallRecorder:
    """Collects the calls of every principal while installed (`LocalAws` installs one)."""

    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _restore: list[tuple[Any, str, Any]] = field(default_factory=list)

    def record(self, principal: Principal | None, action: str, params: dict[str, Any], region: str) -> None:
        """Record a call explicitly (what AWS does for a role without an SDK call here)."""
        if principal is None or action in _UNAUTHORISED:
            return
        with self._lock:
            self.calls.append(Call(principal, action, _identifying(params), region))

    def record_tag_on_create(self, principal: Principal, action: str, params: dict[str, Any], response: Any, region: str) -> None:
        """A create call with tags is also authorised as the service's TagResource on the new resource:
        ECS with the condition key ecs:CreateAction
        (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/supported-iam-actions-tagging.html),
        Secrets Manager's CreateSecret with Tags
        (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html)."""
        if action == "ecs:RegisterTaskDefinition":  # passing the task's roles to ECS
            for which in ("executionRoleArn", "taskRoleArn"):
                if params.get(which):
                    self.record(principal, "iam:PassRole", {"role": params[which], "passed_to": "ecs-tasks.amazonaws.com"}, region)
        if action == "ecs:RegisterTaskDefinition" and params.get("tags"):
            arn = (response.get("taskDefinition") or {}).get("taskDefinitionArn", "")
            self.record(principal, "ecs:TagResource", {"resourceArn": arn, "createAction": "RegisterTaskDefinition"}, region)
        elif action in ("ecs:RunTask", "ecs:CreateService") and params.get("tags"):
            for arn in [t.get("taskArn", "") for t in response.get("tasks", [])] + [(response.get("service") or {}).get("serviceArn", "")]:
                if arn:
                    self.record(principal, "ecs:TagResource", {"resourceArn": arn, "createAction": action.split(":")[1]}, region)
        elif action == "secretsmanager:CreateSecret" and params.get("Tags"):
            self.record(principal, "secretsmanager:TagResource", {"SecretId": response.get("ARN", "")}, region)

    def install(self) -> None:
        from botocore.client import BaseClient

        original_call = BaseClient._make_api_call
        original_start = threading.Thread.start
        recorder = self

        def make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            principal = current()
            if principal is None:
                return original_call(client, operation_name, api_params)
            model = client.meta.service_model
            signing = model.signing_name or model.endpoint_prefix
            action = iam_action(signing, operation_name)
            recorder.record(principal, action, api_params, client.meta.region_name)
            response = original_call(client, operation_name, api_params)
            recorder.record_tag_on_create(principal, action, api_params, response, client.meta.region_name)
            return response

        def start(thread: threading.Thread) -> None:
            thread._tootstack_principal = current()  # type: ignore[attr-defined]
            original_start(thread)

        for owner, name, replacement in ((BaseClient, "_make_api_call", make_api_call), (threading.Thread, "start", start)):
            self._restore.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()

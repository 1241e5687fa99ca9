"""Stopped ECS tasks as Step Functions returns them (`ecs:runTask.sync`): exit code, log stream, link."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def _get(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """Step Functions returns PascalCase keys (TaskArn), the ECS API camelCase (taskArn)."""
    if name in obj:
        return obj[name]
    camel = name[:1].lower() + name[1:]
    return obj.get(camel, default)


def container(task: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = _get(task, "Containers", []) or []
    for item in containers:
        if name is None or _get(item, "Name") == name:
            return item
    return {}


def task_id(task_arn: str) -> str:
    return task_arn.rsplit("/", 1)[-1] if task_arn else ""


def log_location(task_definition: dict[str, Any], container_name: str, task_arn: str, region: str) -> dict[str, str]:
    """Where the awslogs driver writes this task's output: group, stream (prefix/container/task-id), console link."""
    for definition in task_definition.get("containerDefinitions", []):
        if definition.get("name") != container_name:
            continue
        log = definition.get("logConfiguration") or {}
        if log.get("logDriver") != "awslogs":
            return {}
        options = log.get("options", {})
        group = options.get("awslogs-group", "")
        prefix = options.get("awslogs-stream-prefix", "")
        stream = f"{prefix}/{container_name}/{task_id(task_arn)}" if prefix else ""
        region = options.get("awslogs-region", region)
        found = {"log_group": group, "log_stream": stream}
        if group and stream:
            found["log_link"] = console_link(region, group, stream)
        return found
    return {}


def console_link(region: str, group: str, stream: str) -> str:
    """CloudWatch console URL of one log stream (the console's $25-escaped URI components)."""

    def esc(text: str) -> str:
        return quote(quote(text, safe=""), safe="").replace("%", "$")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{esc(group)}/log-events/{esc(stream)}"
    )


def summarize(task: dict[str, Any], container_name: str, location: dict[str, str] | None = None) -> dict[str, Any]:
    """Exit code (None when the container never ran), stop code and reason, log location."""
    item = container(task, container_name)
    exit_code = _get(item, "ExitCode")
    summary: dict[str, Any] = {
        "task_arn": _get(task, "TaskArn", ""),
        "exit_code": exit_code,
        "stop_code": _get(task, "StopCode", ""),
        "stopped_reason": _get(task, "StoppedReason", ""),
        "container_reason": _get(item, "Reason", ""),
    }
    summary.update(location or {})
    return summary


def describe_location(ecs: Any, task: dict[str, Any], container_name: str, region: str) -> dict[str, str]:
    """Log group/stream/link of a stopped task, from its task definition's awslogs options."""
    arn = _get(task, "TaskDefinitionArn", "")
    if not arn:
        return {}
    definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return log_location(definition, container_name, _get(task, "TaskArn", ""), region)

"""The run-oneoff request: validate the console input, then report on the stopped task."""

from __future__ import annotations

from typing import Any

from tootstack.errors import InvalidInput, aws_error_code
from tootstack.oneoff import tasks
from tootstack.oneoff.commands import validate_command
from tootstack.oneoff.redact import stack_secret_values, withhold

TAIL_LINES = 40


def validate_input(data: Any, task_timeout_seconds: int = 3600) -> dict[str, Any]:
    if not isinstance(data, dict) or set(data) != {"command"}:
        raise InvalidInput('run-oneoff input must be exactly {"command": ["tootctl", "media", "usage"]} '
                           "(an argv list of an allowed tootctl or rails command)")
    command = validate_command(data["command"])
    return {"requested": list(data["command"]), "command": command, "task_timeout_seconds": task_timeout_seconds}


def log_tail(logs: Any, group: str, stream: str, limit: int = TAIL_LINES) -> list[str]:
    try:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=False, limit=limit)["events"]
    except Exception as exc:  # no stream: the container never wrote a line
        if aws_error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return [event["message"].rstrip("\n") for event in events]


def report(state: dict[str, Any], *, ecs: Any, logs: Any, secrets_manager: Any, region: str, container_name: str,
           secret_ids: list[str], secret_prefix: str) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise InvalidInput("report needs the execution's state object (validated, task or error)")
    validated = state.get("validated") if isinstance(state.get("validated"), dict) else {}
    requested_argv = validated.get("requested") if isinstance(validated.get("requested"), list) else []
    requested = " ".join(str(arg) for arg in requested_argv)[:2000]
    for key in ("error", "task"):
        if state.get(key) is not None and not isinstance(state[key], dict):
            raise InvalidInput(f"report: state.{key} must be an object as Step Functions writes it")
    if state.get("error"):
        error = state["error"]
        cause = withhold([str(error.get("Cause", ""))[:1000]], stack_secret_values(secrets_manager, secret_ids, secret_prefix))[0]
        if error.get("Error") == "States.Timeout":
            timeout = validated.get("task_timeout_seconds")
            cause = f"no result within {timeout} seconds; Step Functions stops the task" + (f" ({cause})" if cause else "")
        return {"status": "error", "exit_code": None, "command": requested,
                "summary": f"{requested}: the task did not complete: {error.get('Error', '')}: {cause}"}
    task = state.get("task") or {}
    location = tasks.describe_location(ecs, task, container_name, region)
    summary = tasks.summarize(task, container_name, location)
    tail: list[str] = []
    if location.get("log_group") and location.get("log_stream"):
        tail = withhold(log_tail(logs, location["log_group"], location["log_stream"]),
                        stack_secret_values(secrets_manager, secret_ids, secret_prefix))
    code = summary["exit_code"]
    status = "not started" if code is None else ("succeeded" if code == 0 else "failed")
    where = f"log stream {location['log_stream']} in {location['log_group']}" if location.get("log_stream") else "no log stream"
    if code is None:
        text = (f"{requested}: the container never ran (stop code {summary['stop_code'] or 'unknown'}: "
                f"{summary['stopped_reason'] or summary['container_reason'] or 'no reason given'}); {where}")
    else:
        text = f"{requested}: exit code {code}; {where}"
        if code != 0 and tail:
            text += "; last lines:\n" + "\n".join(tail[-10:])
    return {
        "status": status,
        "command": requested,
        "exit_code": code,
        "stop_code": summary["stop_code"],
        "task_arn": summary["task_arn"],
        "log_group": location.get("log_group", ""),
        "log_stream": location.get("log_stream", ""),
        "log_link": location.get("log_link", ""),
        "output_tail": tail,
        "summary": text,
    }

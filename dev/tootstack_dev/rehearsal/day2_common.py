"""Shared by the "maintenance", "upgrade" and "create-admin" rehearsal stages: the deployed state machines (the deploy
stage makes them runnable in moto), secrets and task behaviours set up and restored around a run."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import boto3


@contextmanager
def task_behavior(ctx: Any, task_definition: str, behavior: Callable[[Any], Any]) -> Iterator[list[str]]:
    """Run the stack's task definition `task_definition` (logical id) with `behavior`, its secrets' missing
    keys filled, for the block; yields the secrets that were filled. The previous behaviour and the secret
    values are put back afterwards."""
    taskdef = boto3.client("ecs", region_name=ctx.region).describe_task_definition(
        taskDefinition=ctx.physical(task_definition))["taskDefinition"]
    originals = fill_missing_secret_keys(ctx, taskdef)   # only when no first-boot stage filled them
    try:
        with ctx.aws.tasks.behaving(taskdef["family"], behavior):
            yield [secret_id.split(":secret:", 1)[-1] for secret_id in originals]
    finally:
        restore_secrets(ctx, originals)


def toolbox_behavior(ctx: Any, behavior: Callable[[Any], Any]):
    """`task_behavior` for the toolbox task definition (one-off, migration and maintenance tasks)."""
    return task_behavior(ctx, "ToolboxTaskDefinition", behavior)


def fill_missing_secret_keys(ctx: Any, taskdef: dict[str, Any]) -> dict[str, str]:
    """ECS cannot start a task whose `secrets` name a JSON key its secret lacks. When no first-boot stage
    filled the stack's secrets before this stage, give each missing key a random placeholder (never
    overwriting a value) so the toolbox task can start. Returns the original values: put them back with
    `restore_secrets` when the stage ends."""
    import json
    import secrets as random_source

    sm = boto3.client("secretsmanager", region_name=ctx.region)
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

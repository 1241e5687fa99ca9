"""Detector state behind one small interface, with two implementations.

MemoryStore: a dict, for `tootstack crashloop replay`, the benchmark and the property tests.
DynamoStore: one DynamoDB table (pk/sk strings, TTL attribute `expires_at`), for the Lambda.

Every write is idempotent: a crash is keyed by its task ARN (a duplicate delivery, or a second STOPPED
event for the same task, overwrites itself), deployment facts only move forward in `updatedAt`, and a
halt is a conditional put (first writer wins).

Items (DynamoStore):
  pk=CRASH#<cluster>/<service>#<task definition arn>  sk=<task arn>           a crash (TTL)
  pk=SVC#<cluster>/<service>  sk=STABLE                  last task definition whose deployment COMPLETED
                              sk=DEPLOY                  newest deployment event (id, name, reason, updatedAt)
                              sk=DEPMAP#<deployment id>  deployment id -> task definition (TTL)
                              sk=COMPLETED#<deployment>  COMPLETED seen before its task definition was known (TTL)
                              sk=HALT                    the halted marker (see actions.is_halted)
                              sk=RESUMED                 when an operator resumed: older crashes no longer count
                              sk=EPISODE                 a stable revision's crashloop that was alerted (not a halt:
                                                         the service keeps running); `version` for compare-and-set (TTL)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from tootstack.crashloop.clock import iso
from tootstack.errors import DependencyUnavailable

MAP_TTL_SECONDS = 30 * 24 * 3600
EPISODE_TTL_GRACE_SECONDS = 24 * 3600
UPDATE_EPISODE_ATTEMPTS = 3


@dataclass(frozen=True)
class Crash:
    task_arn: str
    task_definition: str
    stopped_at: float            # epoch seconds (the task's stoppedAt, else the event time)
    kind: str
    reason: str
    exit_codes: dict[str, int | None]
    event_id: str

    def as_evidence(self) -> dict[str, Any]:
        return {
            "task_id": self.task_arn.rsplit("/", 1)[-1],
            "task_arn": self.task_arn,
            "stopped_at": iso(self.stopped_at),
            "kind": self.kind,
            "reason": self.reason,
            "exit_codes": self.exit_codes,
        }


@dataclass
class Deployment:
    deployment_id: str
    event_name: str
    reason: str
    updated_at: float


@dataclass
class ServiceState:
    stable_task_definition: str | None = None
    stable_updated_at: float = 0.0
    deployment: Deployment | None = None
    deployment_map: dict[str, str] = field(default_factory=dict)
    pending_completed: dict[str, float] = field(default_factory=dict)
    halt: dict[str, Any] | None = None
    resumed_at: float = 0.0
    episode: dict[str, Any] | None = None     # the alerted crashloop of a stable revision (see detector.py)


class Store(Protocol):
    def get_service(self, key: str) -> ServiceState: ...
    def add_crash(self, key: str, crash: Crash, expires_at: float) -> None: ...
    def list_crashes(self, key: str, task_definition: str) -> list[Crash]: ...
    def record_deployment(self, key: str, deployment: Deployment) -> None: ...
    def map_deployment(self, key: str, deployment_id: str, task_definition: str) -> None: ...
    def record_completed(self, key: str, deployment_id: str, updated_at: float) -> None: ...
    def set_stable(self, key: str, task_definition: str, updated_at: float) -> None: ...
    def put_halt(self, key: str, halt: dict[str, Any]) -> bool: ...
    def get_halt(self, key: str) -> dict[str, Any] | None: ...
    def update_halt(self, key: str, changes: dict[str, Any]) -> None: ...
    def clear_halt(self, key: str, resumed_at: float) -> dict[str, Any] | None: ...
    def put_episode(self, key: str, episode: dict[str, Any], expected_version: int | None) -> bool: ...
    def update_episode(self, key: str, changes: dict[str, Any]) -> None: ...


# Lifecycle order of deployment events with the same updatedAt.
_RANK = {"SERVICE_DEPLOYMENT_IN_PROGRESS": 0, "SERVICE_DEPLOYMENT_FAILED": 1, "SERVICE_DEPLOYMENT_COMPLETED": 2}


def _newer(updated_at: float, event_name: str, current: Deployment | None) -> bool:
    """Deterministic order of deployment events: updatedAt, then the lifecycle order of the name."""
    if current is None:
        return True
    return (updated_at, _RANK.get(event_name, -1)) > (current.updated_at, _RANK.get(current.event_name, -1))


class MemoryStore:
    """In-process state: the same semantics as DynamoStore, no TTL (replays are finite)."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceState] = {}
        self.crashes: dict[tuple[str, str], dict[str, Crash]] = {}

    def get_service(self, key: str) -> ServiceState:
        return self.services.setdefault(key, ServiceState())

    def add_crash(self, key: str, crash: Crash, expires_at: float) -> None:
        self.crashes.setdefault((key, crash.task_definition), {}).setdefault(crash.task_arn, crash)

    def list_crashes(self, key: str, task_definition: str) -> list[Crash]:
        return list(self.crashes.get((key, task_definition), {}).values())

    def record_deployment(self, key: str, deployment: Deployment) -> None:
        state = self.get_service(key)
        if _newer(deployment.updated_at, deployment.event_name, state.deployment):
            state.deployment = deployment

    def map_deployment(self, key: str, deployment_id: str, task_definition: str) -> None:
        self.get_service(key).deployment_map.setdefault(deployment_id, task_definition)

    def record_completed(self, key: str, deployment_id: str, updated_at: float) -> None:
        self.get_service(key).pending_completed.setdefault(deployment_id, updated_at)

    def set_stable(self, key: str, task_definition: str, updated_at: float) -> None:
        state = self.get_service(key)
        if updated_at >= state.stable_updated_at:
            state.stable_task_definition, state.stable_updated_at = task_definition, updated_at

    def put_halt(self, key: str, halt: dict[str, Any]) -> bool:
        state = self.get_service(key)
        if state.halt is not None:
            return False
        state.halt = dict(halt)
        return True

    def get_halt(self, key: str) -> dict[str, Any] | None:
        return self.get_service(key).halt

    def update_halt(self, key: str, changes: dict[str, Any]) -> None:
        state = self.get_service(key)
        if state.halt is not None:
            state.halt.update(changes)

    def clear_halt(self, key: str, resumed_at: float) -> dict[str, Any] | None:
        state = self.get_service(key)
        halt, state.halt = state.halt, None
        state.resumed_at = max(state.resumed_at, resumed_at)
        return halt

    def put_episode(self, key: str, episode: dict[str, Any], expected_version: int | None) -> bool:
        state = self.get_service(key)
        current = state.episode.get("version") if state.episode else None
        if current != expected_version:
            return False
        state.episode = dict(episode)
        return True

    def update_episode(self, key: str, changes: dict[str, Any]) -> None:
        state = self.get_service(key)
        if state.episode is not None:
            state.episode.update(changes)


class DynamoStore:
    """The detector's state in one DynamoDB table (see the module docstring for the items)."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client = client or boto3.client("dynamodb")

    # --- low-level helpers -------------------------------------------------------------------
    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(TableName=self.table_name, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise
            raise DependencyUnavailable(
                f"DynamoDB {operation} on table {self.table_name} failed: {exc.response.get('Error', {}).get('Code')}"
            ) from None
        except BotoCoreError as exc:
            raise DependencyUnavailable(f"DynamoDB {operation} on table {self.table_name} failed: {type(exc).__name__}") from None

    def _conditional_put(self, item: dict[str, Any], condition: str, values: dict[str, Any] | None = None,
                         names: dict[str, str] | None = None) -> bool:
        """PutItem under `condition`; False when the condition fails (an equal or newer item is kept)."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            self._call("put_item", **kwargs)
            return True
        except ClientError:
            return False

    @staticmethod
    def _s(value: str) -> dict[str, str]:
        return {"S": value}

    @staticmethod
    def _n(value: float) -> dict[str, str]:
        return {"N": repr(round(float(value), 3))}

    # --- Store -------------------------------------------------------------------------------
    def get_service(self, key: str) -> ServiceState:
        state = ServiceState()
        kwargs: dict[str, Any] = {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": self._s(f"SVC#{key}")}}
        while True:
            page = self._call("query", ConsistentRead=True, **kwargs)
            for item in page.get("Items", []):
                sk = item["sk"]["S"]
                if sk == "STABLE":
                    state.stable_task_definition = item["task_definition"]["S"]
                    state.stable_updated_at = float(item["updated_at"]["N"])
                elif sk == "DEPLOY":
                    state.deployment = Deployment(
                        item["deployment_id"]["S"], item["event_name"]["S"], item.get("reason", {}).get("S", ""), float(item["updated_at"]["N"])
                    )
                elif sk.startswith("DEPMAP#"):
                    state.deployment_map[sk[len("DEPMAP#"):]] = item["task_definition"]["S"]
                elif sk.startswith("COMPLETED#"):
                    state.pending_completed[sk[len("COMPLETED#"):]] = float(item["updated_at"]["N"])
                elif sk == "HALT":
                    state.halt = json.loads(item["data"]["S"])
                elif sk == "RESUMED":
                    state.resumed_at = float(item["resumed_at"]["N"])
                elif sk == "EPISODE":
                    state.episode = json.loads(item["data"]["S"])
            if "LastEvaluatedKey" not in page:
                return state
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def add_crash(self, key: str, crash: Crash, expires_at: float) -> None:
        item = {
            "pk": self._s(f"CRASH#{key}#{crash.task_definition}"),
            "sk": self._s(crash.task_arn),
            "data": self._s(json.dumps(asdict(crash), sort_keys=True)),
            "expires_at": {"N": str(int(expires_at))},
        }
        self._conditional_put(item, "attribute_not_exists(pk)")  # the first delivery wins; duplicates no-op

    def list_crashes(self, key: str, task_definition: str) -> list[Crash]:
        crashes: list[Crash] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": self._s(f"CRASH#{key}#{task_definition}")},
        }
        while True:
            page = self._call("query", ConsistentRead=True, **kwargs)
            crashes.extend(Crash(**json.loads(i["data"]["S"])) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return crashes
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def record_deployment(self, key: str, deployment: Deployment) -> None:
        item = {
            "pk": self._s(f"SVC#{key}"),
            "sk": self._s("DEPLOY"),
            "deployment_id": self._s(deployment.deployment_id),
            "event_name": self._s(deployment.event_name),
            "reason": self._s(deployment.reason),
            "updated_at": self._n(deployment.updated_at),
            "rank": {"N": str(_RANK.get(deployment.event_name, -1))},
        }
        self._conditional_put(item, "attribute_not_exists(pk) OR updated_at < :u OR (updated_at = :u AND #r < :r)",
                              {":u": item["updated_at"], ":r": item["rank"]}, {"#r": "rank"})

    def map_deployment(self, key: str, deployment_id: str, task_definition: str) -> None:
        item = {
            "pk": self._s(f"SVC#{key}"),
            "sk": self._s(f"DEPMAP#{deployment_id}"),
            "task_definition": self._s(task_definition),
            "expires_at": {"N": str(int(time.time() + MAP_TTL_SECONDS))},
        }
        self._conditional_put(item, "attribute_not_exists(pk)")

    def record_completed(self, key: str, deployment_id: str, updated_at: float) -> None:
        item = {
            "pk": self._s(f"SVC#{key}"),
            "sk": self._s(f"COMPLETED#{deployment_id}"),
            "updated_at": self._n(updated_at),
            "expires_at": {"N": str(int(time.time() + MAP_TTL_SECONDS))},
        }
        self._conditional_put(item, "attribute_not_exists(pk)")

    def set_stable(self, key: str, task_definition: str, updated_at: float) -> None:
        item = {
            "pk": self._s(f"SVC#{key}"),
            "sk": self._s("STABLE"),
            "task_definition": self._s(task_definition),
            "updated_at": self._n(updated_at),
        }
        self._conditional_put(item, "attribute_not_exists(pk) OR updated_at <= :u", {":u": item["updated_at"]})

    def _halt_item(self, key: str, halt: dict[str, Any]) -> dict[str, Any]:
        return {
            "pk": self._s(f"SVC#{key}"),
            "sk": self._s("HALT"),
            "action": self._s(halt["action"]),
            "data": self._s(json.dumps(halt, sort_keys=True)),
        }

    def put_halt(self, key: str, halt: dict[str, Any]) -> bool:
        return self._conditional_put(self._halt_item(key, halt), "attribute_not_exists(pk)")

    def get_halt(self, key: str) -> dict[str, Any] | None:
        """Only the halted marker (one GetItem: what `is_halted` needs, and all it needs IAM for)."""
        item = self._call("get_item", Key={"pk": self._s(f"SVC#{key}"), "sk": self._s("HALT")}, ConsistentRead=True).get("Item")
        return json.loads(item["data"]["S"]) if item else None

    def update_halt(self, key: str, changes: dict[str, Any]) -> None:
        halt = self.get_halt(key)
        if halt is not None:
            self._call("put_item", Item=self._halt_item(key, {**halt, **changes}))

    def clear_halt(self, key: str, resumed_at: float) -> dict[str, Any] | None:
        old = self._call("delete_item", Key={"pk": self._s(f"SVC#{key}"), "sk": self._s("HALT")}, ReturnValues="ALL_OLD")
        item = {"pk": self._s(f"SVC#{key}"), "sk": self._s("RESUMED"), "resumed_at": self._n(resumed_at)}
        self._conditional_put(item, "attribute_not_exists(pk) OR resumed_at < :r", {":r": item["resumed_at"]})
        data = old.get("Attributes", {}).get("data", {}).get("S")
        return json.loads(data) if data else None

    def _episode_item(self, key: str, episode: dict[str, Any]) -> dict[str, Any]:
        # kept a day past the point where it can no longer be continued (last alert + escalation period)
        expires = float(episode.get("last_alert_at", time.time())) + float(episode.get("quiet_seconds", 3600)) + EPISODE_TTL_GRACE_SECONDS
        return {
            "pk": self._s(f"SVC#{key}"),
            "sk": self._s("EPISODE"),
            "version": {"N": str(int(episode["version"]))},
            "data": self._s(json.dumps(episode, sort_keys=True)),
            "expires_at": {"N": str(int(expires))},
        }

    def put_episode(self, key: str, episode: dict[str, Any], expected_version: int | None) -> bool:
        """Compare-and-set on `version`: two detectors deciding on the same crashloop alert once."""
        item = self._episode_item(key, episode)
        if expected_version is None:
            return self._conditional_put(item, "attribute_not_exists(pk)")
        return self._conditional_put(item, "version = :v", {":v": {"N": str(int(expected_version))}})

    def update_episode(self, key: str, changes: dict[str, Any]) -> None:
        """Merge `changes` into the episode. Several writers share the item (a detector's compare-and-set
        put_episode, another invocation marking its decision applied), so the put is conditional on the
        item being the one read (its version and data); on a concurrent write it re-reads and merges again."""
        from botocore.exceptions import ClientError

        for _ in range(UPDATE_EPISODE_ATTEMPTS):
            found = self._call("get_item", Key={"pk": self._s(f"SVC#{key}"), "sk": self._s("EPISODE")}, ConsistentRead=True).get("Item")
            if found is None:
                return
            try:
                self._call("put_item", Item=self._episode_item(key, {**json.loads(found["data"]["S"]), **changes}),
                           ConditionExpression="version = :v AND #d = :d", ExpressionAttributeNames={"#d": "data"},
                           ExpressionAttributeValues={":v": found["version"], ":d": found["data"]})
                return
            except ClientError:   # ConditionalCheckFailed: someone wrote the episode since it was read
                continue
        raise DependencyUnavailable(
            f"DynamoDB episode of {key} on table {self.table_name} kept changing: {UPDATE_EPISODE_ATTEMPTS} attempts to update it failed")

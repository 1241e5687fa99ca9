"""What a halt decision does on AWS, the halted marker others check, and the un-halt.

Halter.apply:
  rollback       UpdateService(taskDefinition=<stable>) unless the circuit breaker is already doing it,
                 tag the service `tootstack:crashloop-halted`, publish the SNS alert with the evidence
                 (stop reasons, exit codes, task ids), mark the DynamoDB halt item applied.
  alert/escalate a stable revision crash-loops: NO change to the service (it keeps running, ECS keeps
                 replacing tasks); publish the SNS alert with the evidence, its desired/running counts
                 and what was tried; clear the episode's pending decision.
  (scale_to_zero, decided by earlier versions, is never carried out: the detector drops such a halt.)
Halter.apply_nudge a nudge step: UpdateService(forceNewDeployment=True) for `nudge` (the id of the PRIMARY
                 deployment it started is recorded in the episode), then the next step's one-time
                 EventBridge Scheduler schedule (NudgeScheduler) for `nudge`/`nudge_deferred`.
is_halted(service): the DynamoDB HALT item when the table is known (env CRASHLOOP_TABLE), else the tag.
resume(service): untag, delete the HALT item (crashes before the resume no longer count); for a
  scale_to_zero halt an earlier version applied, also restore the desired count it recorded (or
  --desired-count) and, when it recorded suspending Application Auto Scaling, un-suspend it.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from tootstack.crashloop.clock import epoch
from tootstack.crashloop.keys import parse_service_arn, service_key
from tootstack.crashloop.store import DynamoStore, Store
from tootstack.errors import DependencyUnavailable, InvalidInput, aws_error_code

if TYPE_CHECKING:   # the detector loads the Parser models: not on the is_halted callers' cold start
    from tootstack.crashloop.detector import Decision

HALT_TAG = "tootstack:crashloop-halted"
TABLE_ENV = "CRASHLOOP_TABLE"
CLUSTER_ENV = "CLUSTER_NAME"


def _client(name: str, client: Any = None) -> Any:
    if client is not None:
        return client
    import boto3

    return boto3.client(name)


def _aws_error(what: str, exc: Exception) -> DependencyUnavailable:
    code = aws_error_code(exc, type(exc).__name__)
    return DependencyUnavailable(f"{what} failed: {code}")


def resolve_service(service: str, cluster: str | None = None) -> tuple[str, str]:
    """(cluster, service name) from a service ARN, "cluster/service", or a name plus cluster/$CLUSTER_NAME."""
    if not service or not isinstance(service, str) or not service.strip():
        raise InvalidInput("a service name or ARN is required")
    if cluster is not None and (not isinstance(cluster, str) or not cluster.strip()):
        raise InvalidInput("cluster must be a cluster name or ARN")
    if service.startswith("arn:"):
        return parse_service_arn(service, cluster or os.environ.get(CLUSTER_ENV))
    if "/" in service:
        c, _, name = service.partition("/")
        return c, name
    cluster = cluster or os.environ.get(CLUSTER_ENV)
    if not cluster:
        raise InvalidInput(f"which cluster is service {service!r} in? pass --cluster or set {CLUSTER_ENV}")
    return cluster.rsplit("/", 1)[-1], service


def describe_service(ecs: Any, cluster: str, service: str, include_tags: bool = False) -> dict[str, Any]:
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    try:
        found = ecs.describe_services(cluster=cluster, services=[service], **({"include": ["TAGS"]} if include_tags else {}))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ClusterNotFoundException":
            raise InvalidInput(f"ECS cluster {cluster[:200]!r} not found") from None
        if exc.response.get("Error", {}).get("Code") == "InvalidParameterException":
            raise InvalidInput(f"ECS refused the cluster or service name {cluster[:100]!r}/{service[:100]!r}") from None
        raise _aws_error(f"ECS DescribeServices {cluster}/{service}", exc) from None
    except ParamValidationError:
        raise InvalidInput(f"not a valid ECS cluster or service name: {cluster[:100]!r}/{service[:100]!r}") from None
    except BotoCoreError as exc:
        raise _aws_error(f"ECS DescribeServices {cluster}/{service}", exc) from None
    services = [s for s in found.get("services", []) if s.get("status") != "INACTIVE"]
    if not services:
        raise InvalidInput(f"ECS service {service!r} not found in cluster {cluster!r}")
    return services[0]


class Halter:
    """Applies decisions through the ECS, Application Auto Scaling and SNS APIs."""

    def __init__(self, store: Store, ecs: Any = None, sns: Any = None, topic_arn: str | None = None, autoscaling: Any = None,
                 nudges: "NudgeScheduler | None" = None) -> None:
        self.store = store
        self.ecs = _client("ecs", ecs)
        self.sns = sns if sns is not None or not topic_arn else _client("sns")
        self.topic_arn = topic_arn
        self.autoscaling = _client("application-autoscaling", autoscaling)
        self.nudges = nudges   # None: nudges are not scheduled (the alert still names the manual command)

    def apply_nudge(self, decision: Decision) -> dict[str, Any]:
        """A nudge step: force a new deployment (`nudge` only; ECS then launches a task at once, with the
        service's own deployment configuration, e.g. stop-first for core), schedule the next step
        (`nudge`, `nudge_deferred`), and record the step applied. Safe to repeat (the schedule name is
        the step's: a second create is a no-op)."""
        from botocore.exceptions import BotoCoreError, ClientError

        changes: dict[str, Any] = {"applied": True, "forced_new_deployment": False, "next_nudge_at": None, "deployment_id": None}
        try:
            if decision.action == "nudge":
                response = self.ecs.update_service(cluster=decision.cluster, service=decision.service_name, forceNewDeployment=True)
                changes["forced_new_deployment"] = True
                # the deployment it started is the service's PRIMARY one: its IN_PROGRESS event is the chain's own
                changes["deployment_id"] = next((d.get("id") for d in (response or {}).get("service", {}).get("deployments", [])
                                                 if d.get("status") == "PRIMARY"), None)
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"forcing a new deployment of ECS service {decision.service}", exc) from None
        if decision.action in ("nudge", "nudge_deferred") and self.nudges is not None:
            self.nudges.schedule(decision)
            changes["next_nudge_at"] = decision.nudge_at
        from tootstack.crashloop.detector import mark_applied

        mark_applied(self.store, decision, changes["deployment_id"])
        return changes

    def apply(self, decision: Decision) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        cluster, name = decision.cluster, decision.service_name
        service = describe_service(self.ecs, cluster, name)
        if decision.action in ("alert", "escalate"):
            # a stable revision: leave the service as it is (no UpdateService, no tag), tell the operator
            counts = {"desired_count": service.get("desiredCount"), "running_count": service.get("runningCount"),
                      "pending_count": service.get("pendingCount")}
            if decision.nudge_seq and self.nudges is not None:
                self.nudges.schedule(decision)   # before the alert: a retry re-creates it (same name: no-op)
            message_id = self.alert(decision, counts)
            self.store.update_episode(decision.service, {"pending": None, "alert_message_id": message_id})
            return {"applied": True, "service_arn": service["serviceArn"], "alert_message_id": message_id,
                    "nudge_at": decision.nudge_at if decision.nudge_seq and self.nudges is not None else None, **counts}
        changes: dict[str, Any] = {"applied": True, "service_arn": service["serviceArn"]}
        try:
            if decision.action != "rollback":   # scale_to_zero (earlier versions) included: never carried out
                raise InvalidInput(f"unknown action {decision.action!r}")
            if decision.via == "ecs_api" and service.get("taskDefinition") != decision.target_task_definition:
                self.ecs.update_service(cluster=cluster, service=name, taskDefinition=decision.target_task_definition)
            self.ecs.tag_resource(
                resourceArn=service["serviceArn"],
                tags=[{"key": HALT_TAG, "value": f"{decision.action} {decision.decided_at}"}],
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"halting ECS service {cluster}/{name}", exc) from None
        changes["alert_message_id"] = self.alert(decision, changes)
        self.store.update_halt(decision.service, changes)
        return changes

    def alert(self, decision: Decision, changes: dict[str, Any]) -> str | None:
        if not self.topic_arn or self.sns is None:
            return None
        if decision.action in ("alert", "escalate"):
            return self._publish(decision, *_episode_message(decision, changes))
        subject = f"tootstack crashloop: {decision.service_name} halted ({decision.action})"[:100]
        lines = [
            f"Service {decision.service} was halted: {decision.action}"
            + (f" to {decision.target_task_definition}" if decision.target_task_definition else "")
            + (" (by the ECS deployment circuit breaker)" if decision.via == "circuit_breaker" else "") + ".",
            f"Why: {decision.reason}.",
            f"Crashing task definition: {decision.task_definition}",
            "Evidence (latest crashes):",
            *_evidence_lines(decision),
        ]
        lines += [
            "",
            f"Un-halt after fixing the cause: tootstack crashloop resume {decision.service_name} --cluster {decision.cluster}",
            'or invoke the crashloop detector Lambda with {"action": "resume", "service": "' + decision.service_name + '"}.',
            "",
            "Details (JSON):",
            json.dumps(decision.as_dict(), indent=1, sort_keys=True),
        ]
        return self._publish(decision, subject, "\n".join(lines))

    def _publish(self, decision: Decision, subject: str, message: str) -> str | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=subject[:100],
                Message=message,
                MessageAttributes={
                    "service": {"DataType": "String", "StringValue": decision.service},
                    "action": {"DataType": "String", "StringValue": decision.action},
                },
            )
        except (ClientError, BotoCoreError) as exc:
            raise _aws_error(f"SNS publish to {self.topic_arn}", exc) from None
        return response.get("MessageId")


def _evidence_lines(decision: Decision) -> list[str]:
    lines = []
    for e in decision.evidence:
        codes = ", ".join(f"{k}={v}" for k, v in e["exit_codes"].items())
        lines.append(f"  - task {e['task_id']} at {e['stopped_at']}: {e['kind']}; exit codes: {codes or 'none'}; {e['reason']}")
    return lines


def _episode_message(decision: Decision, counts: dict[str, Any]) -> tuple[str, str]:
    """Subject and text of a stable-revision crashloop alert (first alert or escalation)."""
    if decision.action == "escalate":
        subject = f"tootstack crashloop: {decision.service_name} STILL crash-looping (alert {decision.alerts})"
        head = f"Service {decision.service} is still crash-looping on its stable revision (since {decision.episode_started_at})."
    else:
        subject = f"tootstack crashloop: {decision.service_name} crash-looping (stable revision, left running)"
        head = f"Service {decision.service} is crash-looping on its stable revision. It was NOT stopped."
    lines = [
        head,
        f"Why: {decision.reason}.",
        f"Now: desired {counts.get('desired_count')}, running {counts.get('running_count')}, pending {counts.get('pending_count')} tasks.",
        f"Crashing task definition: {decision.task_definition}",
        f"Crashes since {decision.episode_started_at}: {decision.crashes_since_start}",
        "Tried so far:",
        *[f"  - {t}" for t in decision.tried],
        "Evidence (latest crashes):",
        *_evidence_lines(decision),
        "",
        "Nothing deployed broke it: look at what the tasks depend on (database, Redis, secrets, load).",
        "The service serves again as soon as the cause is gone; nothing needs resuming.",
        "If the tasks never reach RUNNING, ECS spaces launches out (up to 27 min)"
        + (f"; the detector forces a new deployment from {decision.nudge_at} (then after 10 and 15 min, then every 15 min)"
           " until a task runs." if decision.nudge_seq else "."),
        "After fixing the cause,",
        f"  aws ecs update-service --cluster {decision.cluster} --service {decision.service_name} --force-new-deployment",
        "starts one at once.",
        "",
        "Details (JSON):",
        json.dumps({**decision.as_dict(), **counts}, indent=1, sort_keys=True),
    ]
    return subject, "\n".join(lines)


class NudgeScheduler:
    """One-time EventBridge Scheduler schedules that invoke the detector Lambda with
    {"action": "nudge", "service": "<cluster>/<service>", "episode": ..., "seq": n, "id": ...} at a step's due time
    (flexible window off, deleted after it ran). The schedule's name is the step's, so creating it twice
    (a retried invocation) is a no-op. IAM: scheduler:CreateSchedule on the group's schedules and
    iam:PassRole of `role_arn` to scheduler.amazonaws.com; the role may only invoke `target_arn`."""

    def __init__(self, group: str, role_arn: str, target_arn: str, scheduler: Any = None) -> None:
        self.group, self.role_arn, self.target_arn = group, role_arn, target_arn
        self.scheduler = _client("scheduler", scheduler)

    @staticmethod
    def payload(decision: Decision) -> dict[str, Any]:
        step = f"nudge#{decision.service}#{decision.nudge_episode}#{decision.nudge_seq}"
        return {"action": "nudge", "service": decision.service, "episode": decision.nudge_episode,
                "seq": decision.nudge_seq, "id": step}

    @staticmethod
    def name(decision: Decision) -> str:
        import hashlib

        digest = hashlib.sha256(f"{decision.service}#{decision.nudge_episode}".encode()).hexdigest()[:24]
        return f"crashloop-nudge-{digest}-{decision.nudge_seq}"

    def schedule(self, decision: Decision, now: float | None = None) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        due = max(epoch(decision.nudge_at), (time.time() if now is None else now) + 60)   # at() must be in the future
        name = self.name(decision)
        try:
            self.scheduler.create_schedule(
                Name=name, GroupName=self.group,
                ScheduleExpression=f"at({time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(due))})", ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"}, ActionAfterCompletion="DELETE",
                Description=f"crashloop nudge {decision.nudge_seq} of {decision.service}"[:512],
                Target={"Arn": self.target_arn, "RoleArn": self.role_arn, "Input": json.dumps(self.payload(decision)),
                        "RetryPolicy": {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":   # already scheduled: a retry
                raise _aws_error(f"scheduling nudge {name}", exc) from None
        except BotoCoreError as exc:
            raise _aws_error(f"scheduling nudge {name}", exc) from None
        return name


def set_scaling_suspended(autoscaling: Any, cluster: str, service: str, suspended: bool) -> bool:
    """Suspend (or resume) Application Auto Scaling of the service; False when it has no scalable target.
    Only resume() calls it (suspended=False), for a halt of an earlier version that suspended it."""
    resource_id = f"service/{cluster}/{service}"
    targets = autoscaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource_id]).get("ScalableTargets", [])
    if not targets:
        return False
    target = targets[0]
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=resource_id,
        ScalableDimension=target["ScalableDimension"],
        SuspendedState={
            "DynamicScalingInSuspended": suspended,
            "DynamicScalingOutSuspended": suspended,
            "ScheduledScalingSuspended": suspended,
        },
    )
    return True


def halt_record(service: str, *, cluster: str | None = None, table_name: str | None = None, dynamodb: Any = None) -> dict[str, Any] | None:
    """The halted marker of a service from the DynamoDB table, or None when it is not halted."""
    cluster, name = resolve_service(service, cluster)
    table_name = table_name or os.environ.get(TABLE_ENV)
    if not table_name:
        raise InvalidInput(f"no crashloop table: pass table_name or set {TABLE_ENV}")
    return DynamoStore(table_name, _client("dynamodb", dynamodb)).get_halt(service_key(cluster, name))


def is_halted(
    service: str,
    *,
    cluster: str | None = None,
    table_name: str | None = None,
    dynamodb: Any = None,
    ecs: Any = None,
) -> bool:
    """True when the crashloop detector halted this service and nobody resumed it yet.

    For the upgrade state machine, the scheduler and anything else that would deploy or scale the
    service: check this first and leave a halted service alone. Reads the DynamoDB halt item when the
    table is known (table_name or $CRASHLOOP_TABLE; IAM: dynamodb:GetItem on the table); otherwise the
    service's `tootstack:crashloop-halted` tag (one DescribeServices with its tags; IAM: ecs:DescribeServices,
    ecs:ListTagsForResource).
    From a state machine without Python: DynamoDB GetItem {pk: "SVC#<cluster>/<service>", sk: "HALT"}.
    """
    if table_name or os.environ.get(TABLE_ENV):
        return halt_record(service, cluster=cluster, table_name=table_name, dynamodb=dynamodb) is not None
    cluster, name = resolve_service(service, cluster)
    tags = describe_service(_client("ecs", ecs), cluster, name, include_tags=True).get("tags", [])
    return any(t.get("key") == HALT_TAG for t in tags)


def resume(
    service: str,
    *,
    cluster: str | None = None,
    desired_count: int | None = None,
    store: Store,
    ecs: Any = None,
    autoscaling: Any = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Un-halt a service. Validates everything before changing anything; safe to run twice."""
    from botocore.exceptions import BotoCoreError, ClientError

    if desired_count is not None and (not isinstance(desired_count, int) or isinstance(desired_count, bool) or desired_count < 0):
        raise InvalidInput(f"desired count must be a whole number >= 0, got {desired_count!r}")
    cluster, name = resolve_service(service, cluster)
    key = service_key(cluster, name)
    ecs = _client("ecs", ecs)
    found = describe_service(ecs, cluster, name, include_tags=True)
    halt = store.get_halt(key)
    tagged = any(t.get("key") == HALT_TAG for t in found.get("tags", []))
    if halt is None and not tagged:
        raise InvalidInput(f"service {key} is not halted: nothing to resume")
    halt = halt or {}
    target = desired_count
    applied_scale_in = halt.get("action") == "scale_to_zero" and (halt.get("previous_desired_count") or not halt.get("dropped"))
    if target is None and applied_scale_in:
        target = int(halt.get("previous_desired_count") or 1)   # an earlier version scaled it to 0
    # un-suspend Application Auto Scaling only where a halt suspended it (an operator may have suspended it):
    # recorded by an applied halt; a dropped one with a recorded count may have been cut short after suspending
    unsuspend = bool(halt.get("autoscaling_suspended") or (halt.get("dropped") and halt.get("previous_desired_count")))
    try:
        scaling = set_scaling_suspended(_client("application-autoscaling", autoscaling), cluster, name, False) if unsuspend else False
        if target is not None:
            ecs.update_service(cluster=cluster, service=name, desiredCount=target)
        if tagged:
            ecs.untag_resource(resourceArn=found["serviceArn"], tagKeys=[HALT_TAG])
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(f"resuming ECS service {key}", exc) from None
    store.clear_halt(key, time.time() if now is None else now)
    return {
        "service": key,
        "resumed": True,
        "was": halt.get("action", "tagged only"),
        "desired_count": target if target is not None else int(found.get("desiredCount", 0)),
        "autoscaling_resumed": scaling,
    }

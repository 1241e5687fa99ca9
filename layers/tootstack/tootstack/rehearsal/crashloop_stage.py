"""Rehearsal stage "crashloop": a simulated service crashes; the real detector Lambda halts it and alerts.

In the moto-deployed stack: the stack's ECS cluster, crashloop table, alert topic and detector function
(routed to functions/crashloop_detector/app.py by the deploy stage). A dedicated demo service runs the
stack's web task definition, so the real services other stages use are never halted. The story:
deployment 1 completes (its task definition becomes stable), deployment 2 (a bad revision) crash-loops
-> rolled back; the stable revision then crashes as well -> scaled to 0; the alert is read back from
SNS through an SQS subscription; `resume` restores the desired count. Anything the deployed stack lacks
(no stack, or an older template) is created in moto and named in the detail line.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3

from tootstack.crashloop import synth
from tootstack.crashloop.actions import HALT_TAG
from tootstack.errors import TootstackError
from tootstack.local.template import LocalFunction
from tootstack.rehearsal.context import RehearsalContext

NAME = "crashloop"
DEMO_SERVICE = "crashloop-rehearsal"
FUNCTION_ID = "CrashloopDetectorFunction"


def run(ctx: RehearsalContext) -> str:
    region = ctx.region
    ecs = boto3.client("ecs", region_name=region)
    stood_in: list[str] = []

    cluster = (ctx.physical_ids.get("Cluster") or "").rsplit("/", 1)[-1]
    if not cluster:
        cluster = f"{ctx.stack_name}-crashloop"
        ecs.create_cluster(clusterName=cluster)
        stood_in.append("cluster")
    table = ctx.physical_ids.get("CrashloopTable")
    if not table:
        table = _create_table(region, f"{ctx.stack_name}-crashloop")
        stood_in.append("table")
    topic = ctx.physical_ids.get("CrashloopAlertTopic")
    if not topic:
        topic = boto3.client("sns", region_name=region).create_topic(Name=f"{ctx.stack_name}-crashloop-alerts")["TopicArn"]
        stood_in.append("topic")

    # the demo service: the stack's web task definition as the stable revision, a bad revision of it
    family_source = ctx.physical_ids.get("WebTaskDefinition")
    base = ecs.describe_task_definition(taskDefinition=family_source)["taskDefinition"] if family_source else None
    if base is None:
        stood_in.append("task definition")
    good = _register(ecs, base, "crashloop-rehearsal", image=None)
    bad = _register(ecs, base, "crashloop-rehearsal", image="registry.invalid/mastodon:does-not-exist")
    service = ecs.create_service(cluster=cluster, serviceName=DEMO_SERVICE, taskDefinition=good, desiredCount=2)["service"]
    first_deployment = service["deployments"][0]["id"]

    alerts = _subscribe(region, topic)
    invoke = _invoker(ctx, table, topic, cluster, stood_in)

    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    invoke(synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", cluster=cluster, service=DEMO_SERVICE,
                                  deployment=first_deployment, at=t0))
    # a routine scale-in and a Spot interruption: never a crash
    for kind in ("scale_in", "spot_interruption"):
        out = invoke(_stop(kind, cluster, good, first_deployment, t0 + timedelta(minutes=1)))
        if out.get("action"):
            raise TootstackError(f"a {kind} stop halted the service")
    ecs.update_service(cluster=cluster, service=DEMO_SERVICE, taskDefinition=bad)
    results = [invoke(_stop("image_pull", cluster, bad, "ecs-svc/2", t0 + timedelta(minutes=2, seconds=40 * i))) for i in range(3)]
    rollback = results[-1]
    if rollback.get("action") != "rollback" or any(r.get("action") for r in results[:-1]):
        raise TootstackError(f"expected a rollback on the 3rd crash, got {[r.get('action') for r in results]}")
    described = ecs.describe_services(cluster=cluster, services=[DEMO_SERVICE])["services"][0]
    if described["taskDefinition"] != good:
        raise TootstackError("the service was not rolled back to the stable task definition")

    crashes = [_stop("exit_nonzero", cluster, good, "ecs-svc/3", t0 + timedelta(minutes=8, seconds=50 * i)) for i in range(3)]
    results = [invoke(event) for event in crashes]
    if results[-1].get("action") != "scale_to_zero":
        raise TootstackError(f"expected scale_to_zero once the stable revision crashed too, got {[r.get('action') for r in results]}")
    described = ecs.describe_services(cluster=cluster, services=[DEMO_SERVICE])["services"][0]
    tags = {t["key"] for t in ecs.list_tags_for_resource(resourceArn=described["serviceArn"]).get("tags", [])}
    if described["desiredCount"] != 0 or HALT_TAG not in tags:
        raise TootstackError("the service is not at desired count 0 with the halted tag")
    messages = alerts()
    subjects = [m.get("Subject", "") for m in messages]
    if len(messages) != 2 or not all(DEMO_SERVICE in s for s in subjects):
        raise TootstackError(f"expected 2 SNS alerts for {DEMO_SERVICE}, got {subjects}")
    task_ids_in_alert = sum(e["detail"]["taskArn"].rsplit("/", 1)[-1] in messages[-1]["Message"] for e in crashes)

    resumed = invoke({"action": "resume", "service": DEMO_SERVICE, "cluster": cluster})
    described = ecs.describe_services(cluster=cluster, services=[DEMO_SERVICE])["services"][0]
    if described["desiredCount"] != 2:
        raise TootstackError(f"resume left desired count {described['desiredCount']}")
    extra = f"; stood in for: {', '.join(stood_in)}" if stood_in else ""
    return (
        f"{DEMO_SERVICE} in cluster {cluster}: bad revision rolled back on its 3rd crash, stable revision "
        f"crash-looping scaled to 0 and tagged halted; {len(messages)} SNS alerts ({task_ids_in_alert}/3 task ids "
        f"as evidence); scale-in and Spot stops ignored; resume restored desired count {resumed['desired_count']}{extra}"
    )


def _stop(kind: str, cluster: str, task_definition: str, deployment: str, at: datetime) -> dict[str, Any]:
    return synth.task_stopped(kind, cluster=cluster, service=DEMO_SERVICE, task_definition=task_definition, deployment=deployment, at=at)


def _register(ecs: Any, base: dict[str, Any] | None, family: str, image: str | None) -> str:
    """A revision of the demo family with the stack's web container name and image (or `image`)."""
    first = (base or {}).get("containerDefinitions", [{}])[0]
    container = {
        "name": first.get("name", "web"),
        "image": image or first.get("image", "ghcr.io/mastodon/mastodon:v4.5.2"),
        "memory": 512,
        "essential": True,
    }
    return ecs.register_task_definition(family=family, containerDefinitions=[container])["taskDefinition"]["taskDefinitionArn"]


def _create_table(region: str, name: str) -> str:
    ddb = boto3.client("dynamodb", region_name=region)
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _subscribe(region: str, topic: str):
    sqs = boto3.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName="crashloop-rehearsal-alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("sns", region_name=region).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read() -> list[dict[str, Any]]:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    return read


def _invoker(ctx: RehearsalContext, table: str, topic: str, cluster: str, stood_in: list[str]):
    """Invoke the detector through the Lambda API: the deployed one (the deploy stage routed it to the
    real handler with its deployed environment), or else a moto function routed to the real handler."""
    function = ctx.physical_ids.get(FUNCTION_ID)
    if not function:
        stood_in.append("detector function")
        function = f"{ctx.stack_name}-crashloop-detector"
        env = {"CRASHLOOP_TABLE": table, "ALERT_TOPIC_ARN": topic, "CLUSTER_NAME": cluster,
               "CRASH_THRESHOLD": "3", "CRASH_WINDOW_MINUTES": "10", "POWERTOOLS_SERVICE_NAME": "tootstack"}
        local = LocalFunction(FUNCTION_ID, ctx.root / "functions/crashloop_detector", "app.handler", {})
        ctx.aws.create_function(function, local, env)
    return lambda event: ctx.aws.invoke(function, event)

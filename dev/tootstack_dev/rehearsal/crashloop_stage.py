"""Rehearsal stage "crashloop": a bad deployment is rolled back; a dependency outage is alerted and the
service, left running, serves again when the dependency is back, without a resume.

In the moto-deployed stack: the stack's ECS cluster, crashloop table, alert topic and detector function
(routed to functions/crashloop_detector/app.py by the deploy stage). A dedicated demo service runs the
stack's web task definition, so the real services other stages use are never touched. The story:
deployment 1 completes (its task definition becomes stable), deployment 2 (a bad revision) crash-loops
-> rolled back. Then the stood-in Redis (the real redis-server standing in for ElastiCache) becomes
unreachable: each task the service starts checks Redis the way Mastodon's boot does, fails, and is
stopped; its STOPPED event goes to the detector, which alerts on the 3rd crash and leaves the service
running. Redis comes back: the next tasks ECS starts (desired count untouched) reach it and serve. No
Fargate task runs here: a "task" is that Redis check, its STOPPED event is synthesised with ECS's shape.
The alerts are read back from SNS through an SQS subscription; `resume` then clears the rollback's
halted marker. Anything the deployed stack lacks (no stack, or an older template, no Redis) is created
here and named in the detail line.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3

from tootstack_dev.crashloop import synth
from tootstack.crashloop.actions import HALT_TAG
from tootstack.errors import TootstackError
from tootstack_dev.local.template import LocalFunction
from tootstack_dev.rehearsal.context import RehearsalContext

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

    # a dependency outage: the stood-in Redis stops answering, the rolled-back (stable) revision crash-loops
    with contextlib.ExitStack() as stack:
        redis_server = ctx.redis
        if redis_server is None:
            from tootstack_dev.local.redis import RedisServer

            redis_server = stack.enter_context(RedisServer())
            stood_in.append("redis")
        outage = _outage(redis_server, invoke, cluster, good, t0 + timedelta(minutes=10))
    described = ecs.describe_services(cluster=cluster, services=[DEMO_SERVICE])["services"][0]
    if described["desiredCount"] != 2 or described["taskDefinition"] != good:
        raise TootstackError(f"the outage changed the service: desired count {described['desiredCount']}")
    messages = alerts()
    subjects = [m.get("Subject", "") for m in messages]
    if len(messages) != 2 or "rollback" not in subjects[0] or "left running" not in subjects[1]:
        raise TootstackError(f"expected a rollback alert and a stable-revision alert for {DEMO_SERVICE}, got {subjects}")
    task_ids_in_alert = sum(task_id in messages[-1]["Message"] for task_id in outage["crashed_task_ids"][:3])

    resumed = invoke({"action": "resume", "service": DEMO_SERVICE, "cluster": cluster})   # clears the rollback's marker
    described = ecs.describe_services(cluster=cluster, services=[DEMO_SERVICE])["services"][0]
    tags = {t["key"] for t in ecs.list_tags_for_resource(resourceArn=described["serviceArn"]).get("tags", [])}
    if described["desiredCount"] != 2 or HALT_TAG in tags:
        raise TootstackError(f"resume left desired count {described['desiredCount']} / tags {sorted(tags)}")
    extra = f"; stood in for: {', '.join(stood_in)}" if stood_in else ""
    return (
        f"{DEMO_SERVICE} in cluster {cluster}: bad revision rolled back on its 3rd crash; Redis unreachable: "
        f"{outage['crashes']} tasks crashed, alerted on the 3rd ({task_ids_in_alert}/3 task ids as evidence), "
        f"left running at desired count 2; Redis back: {outage['serving']}/2 new tasks serving with no resume; "
        f"{len(messages)} SNS alerts; scale-in and Spot stops ignored; resume cleared the rollback marker "
        f"(desired count {resumed['desired_count']}){extra}"
    )


def _redis_answers(redis_server: Any) -> bool:
    """A task's boot check of its Redis dependency (as Mastodon's processes need Redis to start)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # one attempt, half a second: redis-py would otherwise retry a timeout 3 times with back-off. The
    # harness's own user stands for the task's credential (earlier stages may have turned AUTH on).
    client = redis_server.admin_client(socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False


def _outage(redis_server: Any, invoke: Any, cluster: str, task_definition: str, start: datetime) -> dict[str, Any]:
    """Redis unreachable: tasks fail their check and stop (the detector sees each STOPPED event) until the
    alert; then Redis is back and the tasks ECS starts next serve. Returns what happened."""
    crashed: list[str] = []
    redis_server.suspend()
    try:
        for attempt in range(4):
            if _redis_answers(redis_server):
                raise TootstackError("the suspended Redis still answered: no outage to rehearse")
            event = _stop("elb_health_check", cluster, task_definition, "ecs-svc/3", start + timedelta(seconds=60 * attempt))
            crashed.append(event["detail"]["taskArn"].rsplit("/", 1)[-1])
            result = invoke(event)
            if result.get("action") not in (None, "alert") or (result.get("action") == "alert") != (attempt == 2):
                raise TootstackError(f"crash {attempt + 1} of the outage: expected an alert on the 3rd only, got {result.get('action')}")
    finally:
        redis_server.resume()
    serving = sum(_redis_answers(redis_server) for _ in range(2))   # the desired count's two new tasks
    if serving != 2:
        raise TootstackError(f"Redis is back but only {serving}/2 new tasks reach it")
    return {"crashes": len(crashed), "crashed_task_ids": crashed, "serving": serving}


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

"""Sidekiq queue latency against a real redis-server (TLS + ACL user), jobs pushed in Sidekiq's format.

The handler path as deployed: QueueLatencyFunction (outside the VPC: RedisSecret, PutMetricData) ->
Lambda API (moto) -> RedisProbeFunction's real handler (in the VPC: the only one talking to Redis)."""

import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tootstack.autoscale.queue_latency import parse_service_queues, queue_latencies, service_latencies
from tootstack.errors import InvalidInput
from tootstack_dev.local.template import LocalFunction, project_root

ROOT = project_root()
NOW = 1_800_000_000.0


def push(client, queue, enqueued_at, klass="ActivityPub::DeliveryWorker", millis=False):
    """What Sidekiq::Client#push does (Sidekiq 7: float seconds; Sidekiq 8: integer milliseconds)."""
    stamp = int(enqueued_at * 1000) if millis else enqueued_at
    job = {"retry": 16, "queue": queue, "class": klass, "args": ["x"], "jid": uuid.uuid4().hex[:24],
           "created_at": stamp, "enqueued_at": stamp}
    client.sadd("queues", queue)
    client.lpush(f"queue:{queue}", json.dumps(job))


def test_latency_is_the_oldest_jobs_age(redis_server):
    client = redis_server.admin_client()
    for age in (30, 20, 10):                     # oldest pushed first: it sits at the right end
        push(client, "default", NOW - age)
    push(client, "pull", NOW - 500, millis=True)  # Sidekiq 8 layout
    latencies = queue_latencies(client, ["default", "pull", "mailers"], now=NOW)
    assert latencies == {"default": 30.0, "pull": 500.0, "mailers": 0.0}
    client.rpop("queue:default")                 # a worker fetched the oldest job
    assert queue_latencies(client, ["default"], now=NOW)["default"] == 20.0


def test_garbage_jobs_count_as_zero(redis_server):
    client = redis_server.admin_client()
    client.lpush("queue:push", "not json")
    client.lpush("queue:ingress", json.dumps({"class": "X"}))
    assert queue_latencies(client, ["push", "ingress"], now=NOW) == {"push": 0.0, "ingress": 0.0}


def test_service_latency_is_its_worst_queue():
    mapping = parse_service_queues("default=default,push,ingress,mailers,fasp; pull=pull")
    assert service_latencies({"default": 3.0, "push": 42.0, "pull": 7.0}, mapping) == {"default": 42.0, "pull": 7.0}
    for bad in ("", "default", "default=", "default=a b"):
        with pytest.raises(InvalidInput):
            parse_service_queues(bad)


PROBE, PUBLISHER = "tootstack-RedisProbe", "tootstack-QueueLatency"


def _deploy(local_aws, redis_tls, username, password, queues="default=default,push;pull=pull"):
    """Both functions wired as template.yaml wires them; returns the secret ARN."""
    sm = local_aws.client("secretsmanager")
    arn = sm.create_secret(Name="stack/redis-" + uuid.uuid4().hex[:6],
                           SecretString=json.dumps({"username": username, "password": password}))["ARN"]
    local_aws.create_function(PROBE, LocalFunction("RedisProbeFunction", ROOT / "functions/redis_probe", "app.handler", {}), {
        "REDIS_HOST": redis_tls.host, "REDIS_PORT": str(redis_tls.port), "REDIS_TLS": "true", "REDIS_CA_FILE": redis_tls.ca_file})
    local_aws.create_function(PUBLISHER, LocalFunction("QueueLatencyFunction", ROOT / "functions/queue_latency", "app.handler", {}), {
        "REDIS_SECRET_ARN": arn, "REDIS_PROBE_FUNCTION": PROBE, "SERVICE_QUEUES": queues,
        "STACK_NAME": "stack", "POWERTOOLS_METRICS_NAMESPACE": "tootstack"})
    return arn


def _published(local_aws, service):
    now = datetime.now(timezone.utc)
    points = local_aws.client("cloudwatch").get_metric_statistics(
        Namespace="tootstack", MetricName="SidekiqQueueLatency", Statistics=["Maximum"], Period=60,
        Dimensions=[{"Name": "StackName", "Value": "stack"}, {"Name": "Service", "Value": service}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1))["Datapoints"]
    return sorted(p["Maximum"] for p in points)


def _sample():
    return json.loads((ROOT / "events/queue_latency.json").read_text())


def test_publisher_reads_through_the_in_vpc_probe_and_puts_one_metric_per_service(local_aws, redis_tls, caplog, capsys):
    admin = redis_tls.admin_client()
    password = "s3cret-" + uuid.uuid4().hex
    # read-only user: what the probe needs (LRANGE on queue:*, SMEMBERS queues), nothing more
    admin.execute_command("ACL", "SETUSER", "mastodon", "on", f">{password}", "~queue:*", "~queues", "+lrange", "+smembers")
    push(admin, "default", time.time() - 120)
    push(admin, "scheduler", time.time() - 7)        # a queue no service maps: discovered, logged, not published
    _deploy(local_aws, redis_tls, "mastodon", password)
    caplog.set_level(logging.INFO)
    result = local_aws.invoke(PUBLISHER, _sample())
    assert 119 <= result["services"]["default"] < 200 and result["services"]["pull"] == 0.0
    assert set(result["queues"]) == {"default", "push", "pull", "scheduler"} and result["queues"]["scheduler"] >= 6
    default, pull = _published(local_aws, "default"), _published(local_aws, "pull")
    assert len(default) == 1 and 119 <= default[0] < 200 and pull == [0.0]
    assert _published(local_aws, "scheduler") == []
    out = capsys.readouterr()
    assert password not in caplog.text + out.out + out.err


def test_wrong_password_is_refused_without_leaking_it_and_publishes_nothing(local_aws, redis_tls, caplog, capsys):
    redis_tls.admin_client().execute_command("ACL", "SETUSER", "mastodon", "on", ">right-password-123", "~*", "+@all")
    _deploy(local_aws, redis_tls, "mastodon", "wrong-password-456")
    caplog.set_level(logging.INFO)
    with pytest.raises(Exception) as exc:
        local_aws.invoke(PUBLISHER, _sample())
    assert "AuthenticationError" in str(exc.value) and "wrong-password-456" not in str(exc.value)
    assert _published(local_aws, "default") == []
    out = capsys.readouterr()
    assert "wrong-password-456" not in caplog.text + out.out + out.err


def test_a_rotated_password_is_read_again_once(local_aws, redis_tls):
    admin = redis_tls.admin_client()
    first, second = "first-" + uuid.uuid4().hex, "second-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", "mastodon", "on", f">{first}", "~*", "+@all")
    arn = _deploy(local_aws, redis_tls, "mastodon", first, queues="default=default")
    local_aws.invoke(PUBLISHER, _sample())                      # caches the first password
    local_aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "mastodon", "password": second}))
    admin.execute_command("ACL", "SETUSER", "mastodon", "resetpass", f">{second}")   # rotation retired the first
    assert local_aws.invoke(PUBLISHER, _sample())["services"] == {"default": 0.0}
    assert _published(local_aws, "default") == [0.0]


def test_probe_action_refuses_bad_input_and_uses_its_own_endpoint(local_aws, redis_tls):
    admin = redis_tls.admin_client()
    password = "probe-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", "mastodon", "on", f">{password}", "~*", "+@all")
    push(admin, "pull", time.time() - 30, millis=True)
    _deploy(local_aws, redis_tls, "mastodon", password)
    good = {"action": "sidekiq_queue_latency", "credential": {"username": "mastodon", "password": password}, "queues": ["pull"]}
    # an endpoint in the payload is ignored: the probe only ever talks to its configured Redis
    answer = local_aws.invoke(PROBE, dict(good, endpoint={"host": "203.0.113.9", "port": 1}))
    assert answer["ok"] is True and 29 <= answer["queues"]["pull"] < 100
    for bad in ({"queues": []}, {"queues": ["a b"]}, {"queues": "pull"}, {"credential": {"username": "mastodon"}},
                {"credential": "x"}, {"action": "flushall"}):
        answer = local_aws.invoke(PROBE, dict(good, **bad))
        assert answer["ok"] is False and answer["error"] == "InvalidInput" and password not in json.dumps(answer)

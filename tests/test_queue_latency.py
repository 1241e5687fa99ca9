"""Sidekiq queue latency against a real redis-server (TLS + ACL user), jobs pushed in Sidekiq's format."""

import json
import time
import uuid

import boto3
import pytest
from moto import mock_aws

from tootstack.autoscale.queue_latency import parse_service_queues, queue_latencies, service_latencies
from tootstack.errors import DependencyUnavailable, InvalidInput
from tootstack.local.template import LocalFunction, project_root

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


class _Context:
    function_name = "queue-latency"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:queue-latency"
    aws_request_id = "req-1"


def test_handler_emits_one_metric_per_service_over_tls_with_acl_user(redis_tls, monkeypatch, capsys):
    admin = redis_tls.admin_client()
    password = "s3cret-" + uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", "mastodon", "on", f">{password}", "~*", "&*", "+@all", "-@admin")
    push(admin, "default", time.time() - 120)
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="stack/redis", SecretString=json.dumps({"username": "mastodon", "password": password}))["ARN"]
        for key, value in {"REDIS_HOST": redis_tls.host, "REDIS_PORT": str(redis_tls.port), "REDIS_SECRET_ARN": arn,
                           "REDIS_CA_FILE": redis_tls.ca_file, "SERVICE_QUEUES": "default=default,push;pull=pull",
                           "STACK_NAME": "stack"}.items():
            monkeypatch.setenv(key, value)
        fn = LocalFunction("QueueLatencyFunction", ROOT / "functions/queue_latency", "app.handler", {})
        event = json.loads((ROOT / "events/queue_latency.json").read_text())
        result = fn.entrypoint(event, _Context())
        out = capsys.readouterr().out
    assert 119 <= result["services"]["default"] < 200 and result["services"]["pull"] == 0.0
    metrics = [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]
    by_service = {m["Service"]: m["SidekiqQueueLatency"] for m in metrics}  # EMF values are lists
    assert set(by_service) == {"default", "pull"} and by_service["pull"] == [0.0] and by_service["default"][0] >= 119
    assert all(m["StackName"] == "stack" and m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "tootstack" for m in metrics)
    assert password not in out


def test_handler_refuses_wrong_password_without_leaking_it(redis_tls, monkeypatch):
    admin = redis_tls.admin_client()
    admin.execute_command("ACL", "SETUSER", "mastodon", "on", ">right-password-123", "~*", "+@all")
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="stack/redis2", SecretString=json.dumps({"username": "mastodon", "password": "wrong-password-456"}))["ARN"]
        for key, value in {"REDIS_HOST": redis_tls.host, "REDIS_PORT": str(redis_tls.port), "REDIS_SECRET_ARN": arn,
                           "REDIS_CA_FILE": redis_tls.ca_file, "SERVICE_QUEUES": "default=default"}.items():
            monkeypatch.setenv(key, value)
        fn = LocalFunction("QueueLatencyFunction2", ROOT / "functions/queue_latency", "app.handler", {})
        with pytest.raises(DependencyUnavailable) as exc:
            fn.entrypoint({}, _Context())
    assert "wrong-password-456" not in str(exc.value) and "AuthenticationError" in str(exc.value)

"""Crashloop halt actions against moto: the real Lambda handler with its sample event, DynamoDB state,
ECS UpdateService, tags, Application Auto Scaling, SNS (read back through an SQS subscription), resume."""

import copy
import json
import uuid
from datetime import timedelta

import boto3
import pytest
from moto import mock_aws

from tootstack_dev import cli
from tootstack_dev.crashloop import synth
from tootstack.crashloop.actions import halt_record, is_halted
from tootstack.crashloop.detector import Detector
from tootstack.crashloop.store import Crash, Deployment, DynamoStore
from tootstack.errors import DependencyUnavailable
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack_dev.local.aws import LambdaContext

ROOT = project_root()
REGION = "us-east-1"
TABLE = "tootstack-crashloop"
SAMPLE = json.loads((ROOT / "events/crashloop_detector.json").read_text())


def _Context():
    return LambdaContext("crashloop-detector")




def create_table(client, name=TABLE):
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


class Env:
    def __init__(self):
        self.ecs = boto3.client("ecs", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        create_table(self.ddb)
        self.ecs.create_cluster(clusterName="tootstack")
        self.td = [
            self.ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": f"mastodon:{i}", "memory": 512}])[
                "taskDefinition"]["taskDefinitionArn"]
            for i in (1, 2)
        ]
        svc = self.ecs.create_service(cluster="tootstack", serviceName="web", taskDefinition=self.td[0], desiredCount=2)["service"]
        self.service_arn = svc["serviceArn"]
        self.deployment = svc["deployments"][0]["id"]
        self.topic = self.sns.create_topic(Name="crashloop-alerts")["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName="alerts")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)
        self.env = {"CRASHLOOP_TABLE": TABLE, "ALERT_TOPIC_ARN": self.topic, "CLUSTER_NAME": "tootstack",
                    "CRASH_THRESHOLD": "3", "CRASH_WINDOW_MINUTES": "10", "POWERTOOLS_SERVICE_NAME": "tootstack"}

    def service(self):
        return self.ecs.describe_services(cluster="tootstack", services=["web"])["services"][0]

    def alerts(self):
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        env = Env()
        for k, v in env.env.items():
            monkeypatch.setenv(k, v)
        yield env


@pytest.fixture
def handler():
    return LocalFunction("CrashloopDetectorFunction", ROOT / "functions/crashloop_detector", "app.handler", {}).entrypoint


def crash_from_sample(i, task_definition=None, minutes=1):
    """The sample event file with a fresh event id / task id / time: the n-th crash of a loop."""
    event = copy.deepcopy(SAMPLE)
    task_id = uuid.uuid4().hex
    event["id"] = str(uuid.uuid4())
    at = synth.EPOCH + timedelta(minutes=i * minutes)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    event["time"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = event["detail"]
    detail["taskArn"] = detail["taskArn"].rsplit("/", 1)[0] + "/" + task_id
    detail["stoppedAt"] = detail["updatedAt"] = stamp
    if task_definition:
        detail["taskDefinitionArn"] = task_definition
    return event


def test_sample_event_is_processed_and_changes_nothing_on_its_own(aws, handler):
    result = handler(SAMPLE, _Context())
    assert result["stop_kind"] == "exit_nonzero" and result["action"] is None
    assert aws.service()["desiredCount"] == 2 and aws.alerts() == []


def test_third_crash_of_a_stable_revision_alerts_and_leaves_the_service_running(aws, handler):
    """Nothing deployed: the service is not stopped, scaled, suspended or tagged; the alert carries the
    evidence; an hour later, still crashing, it is alerted again with what was tried."""
    aas = boto3.client("application-autoscaling", region_name=REGION)
    aas.register_scalable_target(ServiceNamespace="ecs", ResourceId="service/tootstack/web",
                                 ScalableDimension="ecs:service:DesiredCount", MinCapacity=1, MaxCapacity=4)
    events = [crash_from_sample(i, aws.td[0]) for i in range(3)]
    results = [handler(e, _Context()) for e in events]
    assert [r["action"] for r in results] == [None, None, "alert"]
    assert results[-1]["desired_count"] == 2 and results[-1]["alerts"] == 1
    svc = aws.service()
    assert svc["desiredCount"] == 2 and svc["taskDefinition"] == aws.td[0]
    assert aws.ecs.list_tags_for_resource(resourceArn=aws.service_arn)["tags"] == []
    target = aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=["service/tootstack/web"])["ScalableTargets"][0]
    assert not any(target.get("SuspendedState", {}).values())
    assert is_halted("web") is False and halt_record("web") is None
    [alert] = aws.alerts()
    assert alert["Subject"] == "tootstack crashloop: web crash-looping (stable revision, left running)"
    for event in events:
        assert event["detail"]["taskArn"].rsplit("/", 1)[-1] in alert["Message"]
    assert "web=1" in alert["Message"] and "Essential container in task exited" in alert["Message"]
    assert "It was NOT stopped" in alert["Message"] and "nothing needs resuming" in alert["Message"]
    assert "desired 2, running" in alert["Message"]
    # more crashes within the hour: nothing more
    assert [handler(crash_from_sample(i, aws.td[0]), _Context())["action"] for i in range(3, 6)] == [None] * 3
    assert aws.alerts() == []
    # still crash-looping an hour after the alert: escalated, with what was tried
    later = handler(crash_from_sample(63, aws.td[0]), _Context())
    assert later["action"] == "escalate" and later["alerts"] == 2
    [again] = aws.alerts()
    assert again["Subject"] == "tootstack crashloop: web STILL crash-looping (alert 2)"
    assert "left running" in again["Message"] and "alerted 1 time(s)" in again["Message"]
    assert aws.service()["desiredCount"] == 2


def test_crash_during_deployment_rolls_back_to_the_stable_definition(aws, handler):
    completed = synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment=aws.deployment)
    assert handler(completed, _Context())["action"] is None          # resolver: DescribeServices deployments
    aws.ecs.update_service(cluster="tootstack", service="web", taskDefinition=aws.td[1])
    results = [handler(crash_from_sample(i, aws.td[1]), _Context()) for i in range(1, 4)]
    assert results[-1]["action"] == "rollback" and results[-1]["target_task_definition"] == aws.td[0]
    svc = aws.service()
    assert svc["taskDefinition"] == aws.td[0] and svc["desiredCount"] == 2
    assert is_halted("web")
    [alert] = aws.alerts()
    assert "rollback" in alert["Subject"] and aws.td[0] in alert["Message"]


def test_duplicate_delivery_is_idempotent_on_the_event_id(aws, handler):
    event = crash_from_sample(0, aws.td[0])
    first = handler(event, _Context())
    for _ in range(4):
        assert handler(copy.deepcopy(event), _Context()) == first
    crashes = DynamoStore(TABLE, aws.ddb).list_crashes("tootstack/web", aws.td[0])
    assert len(crashes) == 1
    # the same task's STOPPED event delivered under another event id counts once as well
    again = copy.deepcopy(event)
    again["id"] = str(uuid.uuid4())
    handler(again, _Context())
    assert len(DynamoStore(TABLE, aws.ddb).list_crashes("tootstack/web", aws.td[0])) == 1
    assert aws.service()["desiredCount"] == 2


def test_a_failed_action_is_retried_on_redelivery(aws, handler, monkeypatch):
    monkeypatch.setenv("ALERT_TOPIC_ARN", aws.topic + "-missing")
    events = [crash_from_sample(i, aws.td[0]) for i in range(3)]
    handler(events[0], _Context())
    handler(events[1], _Context())
    with pytest.raises(DependencyUnavailable, match="SNS publish"):
        handler(events[2], _Context())
    monkeypatch.setenv("ALERT_TOPIC_ARN", aws.topic)
    handler = LocalFunction("CrashloopDetectorFunction", ROOT / "functions/crashloop_detector", "app.handler", {}).entrypoint
    # (the configuration change starts new execution environments) EventBridge retry:
    assert handler(events[2], _Context())["action"] == "alert"
    assert len(aws.alerts()) == 1
    assert DynamoStore(TABLE, aws.ddb).get_service("tootstack/web").episode["pending"] is None
    assert handler(crash_from_sample(3, aws.td[0]), _Context())["action"] is None     # sent once


def test_scale_in_and_spot_stops_through_the_handler_never_halt(aws, handler):
    for i in range(6):
        kind = ("scale_in", "spot_interruption", "deployment_replacement")[i % 3]
        handler(synth.task_stopped(kind, task_definition=aws.td[0], at=synth.EPOCH + timedelta(seconds=i)), _Context())
    assert aws.service()["desiredCount"] == 2 and not is_halted("web")


def _halt(aws, handler):
    """A bad deployment rolled back: the only halt the detector makes."""
    handler(synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment=aws.deployment), _Context())
    aws.ecs.update_service(cluster="tootstack", service="web", taskDefinition=aws.td[1])
    for i in range(1, 4):
        handler(crash_from_sample(i, aws.td[1]), _Context())
    assert aws.service()["taskDefinition"] == aws.td[0] and is_halted("web")


def test_resume_cli_restores_the_count_and_clears_the_marker(aws, handler, capsys):
    _halt(aws, handler)
    capsys.readouterr()   # the handler's log lines
    assert cli.main(["crashloop", "resume", "web", "--cluster", "tootstack", "--table", TABLE]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["desired_count"] == 2 and out["was"] == "rollback"
    assert aws.service()["desiredCount"] == 2
    assert not is_halted("web")
    assert aws.ecs.list_tags_for_resource(resourceArn=aws.service_arn)["tags"] == []
    # not halted any more: a clear error, exit 2
    assert cli.main(["crashloop", "resume", "web", "--cluster", "tootstack", "--table", TABLE]) == 2
    assert "is not halted" in capsys.readouterr().err
    # old crashes no longer count: one new crash does not halt again
    handler(crash_from_sample(4, aws.td[1]), _Context())
    assert aws.service()["desiredCount"] == 2 and not is_halted("web")


def test_resume_with_explicit_count_and_bad_input_changes_nothing(aws, handler, capsys):
    _halt(aws, handler)
    capsys.readouterr()
    assert cli.main(["crashloop", "resume", "nope", "--cluster", "tootstack", "--table", TABLE]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["crashloop", "resume", "web", "--cluster", "tootstack", "--table", TABLE, "--desired-count", "-1"]) == 2
    assert is_halted("web") and aws.service()["desiredCount"] == 2
    assert cli.main(["crashloop", "resume", "web", "--cluster", "tootstack", "--table", TABLE, "--desired-count", "1"]) == 0
    assert aws.service()["desiredCount"] == 1


def test_console_resume_through_the_lambda(aws, handler):
    _halt(aws, handler)
    result = handler({"action": "resume", "service": "web", "desired_count": 3}, _Context())
    assert result["resumed"] is True and aws.service()["desiredCount"] == 3
    assert not is_halted("web")
    from tootstack.errors import InvalidInput

    with pytest.raises(InvalidInput, match="service"):
        handler({"action": "resume"}, _Context())


def test_is_halted_falls_back_to_the_service_tag(aws, handler, monkeypatch):
    _halt(aws, handler)
    monkeypatch.delenv("CRASHLOOP_TABLE")
    assert is_halted("web") is True
    assert is_halted(aws.service_arn) is True


def _old_scale_to_zero_halt(aws, **recorded):
    """A HALT item as an earlier version wrote it: scale_to_zero of web, decided, maybe (partly) applied."""
    from tootstack.crashloop.detector import Decision

    halt = Decision(service="tootstack/web", cluster="tootstack", service_name="web", action="scale_to_zero",
                    reason="crash-looping on its stable revision", task_definition=aws.td[0],
                    decided_at="2026-01-01T00:00:00Z").as_dict()
    DynamoStore(TABLE, aws.ddb).put_halt("tootstack/web", {**halt, **recorded})


def test_an_unapplied_scale_to_zero_of_an_earlier_version_is_never_carried_out(aws, handler):
    """After an upgrade the detector no longer stops a stable revision: a scale_to_zero an earlier version
    decided but did not apply is dropped (logged), not retried by the next event."""
    _old_scale_to_zero_halt(aws)
    handler(synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment=aws.deployment), _Context())
    result = handler(crash_from_sample(1), _Context())
    assert result["action"] is None
    assert aws.service()["desiredCount"] == 2 and not is_halted("web")     # nothing was done: the marker is gone
    assert aws.ecs.list_tags_for_resource(resourceArn=aws.service_arn)["tags"] == []
    # the crashes still count: a crashloop of the stable revision is alerted, the service left running
    actions = [handler(crash_from_sample(i), _Context())["action"] for i in (2, 3)]
    assert actions == [None, "alert"] and aws.service()["desiredCount"] == 2


def test_a_possibly_half_applied_old_scale_to_zero_is_dropped_but_resume_restores_its_count(aws, handler):
    """An earlier version records previous_desired_count before scaling in: the attempt may have scaled the
    service in. The halt is marked applied and dropped (never retried); resume restores that count."""
    _old_scale_to_zero_halt(aws, previous_desired_count=2)
    aws.ecs.update_service(cluster="tootstack", service="web", desiredCount=0)
    assert handler(crash_from_sample(1), _Context())["action"] is None
    halt = halt_record("web")
    assert halt["applied"] is True and halt["dropped"] and aws.service()["desiredCount"] == 0
    result = handler({"action": "resume", "service": "web"}, _Context())
    assert result["desired_count"] == 2 and aws.service()["desiredCount"] == 2 and not is_halted("web")


def test_resume_un_suspends_autoscaling_only_where_the_halt_suspended_it(aws):
    """An applied scale_to_zero of an earlier version that found no scalable target (autoscaling_suspended
    False): resume restores the count and leaves a suspension an operator made since alone."""
    from tootstack.crashloop.actions import resume

    scaling = boto3.client("application-autoscaling", region_name=REGION)
    suspended = {"DynamicScalingInSuspended": True, "DynamicScalingOutSuspended": True, "ScheduledScalingSuspended": True}
    scaling.register_scalable_target(ServiceNamespace="ecs", ResourceId="service/tootstack/web", ScalableDimension="ecs:service:DesiredCount",
                                     MinCapacity=1, MaxCapacity=4, SuspendedState=suspended)
    _old_scale_to_zero_halt(aws, applied=True, previous_desired_count=3, autoscaling_suspended=False)
    result = resume("web", cluster="tootstack", store=DynamoStore(TABLE, aws.ddb), ecs=aws.ecs, autoscaling=scaling)
    assert result["desired_count"] == 3 and result["autoscaling_resumed"] is False
    [target] = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert target["SuspendedState"] == suspended
    # one that did suspend it is un-suspended
    _old_scale_to_zero_halt(aws, applied=True, previous_desired_count=3, autoscaling_suspended=True)
    assert resume("web", cluster="tootstack", store=DynamoStore(TABLE, aws.ddb), ecs=aws.ecs, autoscaling=scaling)["autoscaling_resumed"] is True
    [target] = scaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert not any(target["SuspendedState"].values())


def test_dynamo_store_is_idempotent_and_ordered(aws):
    store = DynamoStore(TABLE, aws.ddb)
    crash = Crash("arn:task/1", "td:1", 100.0, "exit_nonzero", "r", {"web": 1}, "e1")
    store.add_crash("c/s", crash, 1e9)
    store.add_crash("c/s", Crash("arn:task/1", "td:1", 999.0, "exit_nonzero", "r", {"web": 1}, "e2"), 1e9)
    assert store.list_crashes("c/s", "td:1") == [crash]
    store.record_deployment("c/s", Deployment("ecs-svc/2", "SERVICE_DEPLOYMENT_COMPLETED", "", 200.0))
    store.record_deployment("c/s", Deployment("ecs-svc/1", "SERVICE_DEPLOYMENT_IN_PROGRESS", "", 100.0))  # older: ignored
    store.set_stable("c/s", "td:2", 200.0)
    store.set_stable("c/s", "td:1", 100.0)
    state = store.get_service("c/s")
    assert state.deployment.deployment_id == "ecs-svc/2" and state.stable_task_definition == "td:2"
    assert store.put_halt("c/s", {"action": "rollback"}) is True
    assert store.put_halt("c/s", {"action": "rollback"}) is False
    assert store.put_halt("c/s", {"action": "scale_to_zero"}) is False         # first writer wins: no escalation any more
    assert store.clear_halt("c/s", 300.0) == {"action": "rollback"}
    assert store.get_service("c/s").halt is None and store.get_service("c/s").resumed_at == 300.0
    episode = {"version": 1, "task_definition": "td:2", "last_alert_at": 400.0, "pending": {"action": "alert"}}
    assert store.put_episode("c/s", episode, None) is True
    assert store.put_episode("c/s", episode, None) is False                       # a second first alert
    assert store.put_episode("c/s", {**episode, "version": 2}, 5) is False         # stale version
    assert store.put_episode("c/s", {**episode, "version": 2}, 1) is True
    store.update_episode("c/s", {"pending": None})
    assert store.get_service("c/s").episode == {**episode, "version": 2, "pending": None}
    ttl = aws.ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"


def test_update_episode_keeps_a_concurrent_compare_and_set(aws):
    """Between update_episode's read and its write another detector moves the episode to version 2
    (put_episode): the update re-reads and merges into version 2 instead of writing version 1 back."""
    store = DynamoStore(TABLE, aws.ddb)
    episode = {"version": 1, "task_definition": "td:2", "last_alert_at": 400.0, "pending": {"action": "alert"}}
    assert store.put_episode("c/s", episode, None) is True
    other = DynamoStore(TABLE, aws.ddb)

    class Racing:
        """The table's client; the first GetItem of the EPISODE is followed by the other writer's put."""

        raced = False

        def __getattr__(self, name):
            return getattr(aws.ddb, name)

        def get_item(self, **kwargs):
            found = aws.ddb.get_item(**kwargs)
            if not Racing.raced:
                Racing.raced = True
                assert other.put_episode("c/s", {**episode, "version": 2, "alerts": 2, "nudge": {"seq": 2}}, 1) is True
            return found

    DynamoStore(TABLE, Racing()).update_episode("c/s", {"pending": None})
    assert store.get_service("c/s").episode == {**episode, "version": 2, "alerts": 2, "nudge": {"seq": 2}, "pending": None}


def test_update_episode_gives_up_after_a_few_concurrent_writes(aws):
    store = DynamoStore(TABLE, aws.ddb)
    assert store.put_episode("c/s", {"version": 1, "last_alert_at": 400.0}, None) is True

    class AlwaysRacing:
        def __getattr__(self, name):
            return getattr(aws.ddb, name)

        def get_item(self, **kwargs):
            found = aws.ddb.get_item(**kwargs)
            version = int(found["Item"]["version"]["N"])
            assert store.put_episode("c/s", {"version": version + 1, "last_alert_at": 400.0}, version) is True
            return found

    with pytest.raises(DependencyUnavailable, match="kept changing"):
        DynamoStore(TABLE, AlwaysRacing()).update_episode("c/s", {"pending": None})
    assert store.get_service("c/s").episode == {"version": 4, "last_alert_at": 400.0}


def test_detector_with_dynamo_store_matches_the_memory_store(aws):
    events = [synth.task_stopped("image_pull", at=synth.EPOCH + timedelta(seconds=30 * i)) for i in range(5)]
    events += [synth.task_stopped("image_pull", at=synth.EPOCH + timedelta(seconds=3700 + 30 * i)) for i in range(2)]
    from tootstack.crashloop.store import MemoryStore

    def run(store):
        detector = Detector(store=store)
        out = []
        for e in events + events[:2]:
            d = detector.replay(e)
            if d:
                out.append((d.action, d.crash_count))
        return out

    assert run(DynamoStore(TABLE, aws.ddb)) == run(MemoryStore()) == [("alert", 3), ("escalate", 5)]


def test_missing_table_is_a_dependency_error(aws):
    with pytest.raises(DependencyUnavailable, match="no-such-table"):
        DynamoStore("no-such-table", aws.ddb).get_service("c/s")


def test_no_secret_value_reaches_logs_alerts_or_state(aws, handler, capsys):
    """The detector reads event metadata only: a task definition's secret values never surface."""
    secret_value = "s3cr3t-" + uuid.uuid4().hex
    arn = boto3.client("secretsmanager", region_name=REGION).create_secret(Name="mastodon/app", SecretString=secret_value)["ARN"]
    td = aws.ecs.register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "mastodon:3", "memory": 512,
                                             "secrets": [{"name": "SECRET_KEY_BASE", "valueFrom": arn}]}])["taskDefinition"]["taskDefinitionArn"]
    aws.ecs.update_service(cluster="tootstack", service="web", taskDefinition=td)
    results = [handler(crash_from_sample(i, td), _Context()) for i in range(3)]
    results.append(handler(crash_from_sample(62, td), _Context()))   # an hour on: escalated
    captured = capsys.readouterr()
    items = aws.ddb.scan(TableName=TABLE)["Items"]
    alerts = aws.alerts()
    assert [r["action"] for r in results] == [None, None, "alert", "escalate"] and len(alerts) == 2
    haystack = json.dumps([results, items, alerts], default=str) + captured.out + captured.err
    assert secret_value not in haystack


def test_config_from_env():
    from tootstack.crashloop.runtime import config_from_env
    from tootstack.errors import InvalidInput

    assert config_from_env({"CRASH_THRESHOLD": "4", "CRASH_WINDOW_MINUTES": "5"}).window_seconds == 300
    assert config_from_env({"CRASH_WINDOW_MINUTES": "1.5"}).window_seconds == 90
    assert config_from_env({}).threshold == 3 and config_from_env({}).window_seconds == 600
    with pytest.raises(InvalidInput, match="CRASH_THRESHOLD"):
        config_from_env({"CRASH_THRESHOLD": "three"})
    assert config_from_env({}).escalate_after_seconds == 3600
    assert config_from_env({"CRASH_ESCALATE_MINUTES": "90"}).escalate_after_seconds == 5400
    # the template allows a window of up to a day: the escalation period follows it rather than failing
    assert config_from_env({"CRASH_WINDOW_MINUTES": "1440"}).escalate_after_seconds == 86400
    with pytest.raises(InvalidInput, match="escalation period"):
        config_from_env({"CRASH_ESCALATE_MINUTES": "5"})


def test_without_a_nudge_schedule_group_the_alert_announces_no_nudges():
    """Nudges are scheduled only with NUDGE_SCHEDULE_GROUP and NUDGE_SCHEDULER_ROLE_ARN set: without them
    the detector starts no chain and the alert does not name a schedule."""
    from tootstack.crashloop.actions import _episode_message
    from tootstack.crashloop.runtime import config_from_env

    both = {"NUDGE_SCHEDULE_GROUP": "g", "NUDGE_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/r"}
    assert config_from_env(both).nudge is True
    assert config_from_env({}).nudge is False and config_from_env({"NUDGE_SCHEDULE_GROUP": "g"}).nudge is False
    detector = Detector(config_from_env({}))
    for e in synth.stable_revisions(["core"]):
        detector.replay(e)
    alerts = [d for d in (detector.replay(synth.task_stopped("secrets", service="core", task_definition=synth.task_definition_arn("core", 1),
                                                             deployment="ecs-svc/1", container="core",
                                                             at=synth.EPOCH + timedelta(minutes=30 + i))) for i in range(3)) if d]
    [alert] = alerts
    _, text = _episode_message(alert, {})
    assert alert.nudge_seq == 0 and "forces a new deployment" not in text and "nudges scheduled" not in text
    assert detector.due_nudges(1e12) == []


def test_resume_cli_finds_table_and_cluster_in_the_stack_outputs(aws, handler, capsys, monkeypatch):
    _halt(aws, handler)
    monkeypatch.delenv("CRASHLOOP_TABLE")
    monkeypatch.delenv("CLUSTER_NAME")
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"CrashloopTableName": {"Value": TABLE}, "ClusterName": {"Value": "tootstack"}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName="mastodon", TemplateBody=json.dumps(template))
    capsys.readouterr()
    assert cli.main(["crashloop", "resume", "web", "--stack", "mastodon", "--desired-count", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["service"] == "tootstack/web"
    assert aws.service()["desiredCount"] == 1
    assert cli.main(["crashloop", "resume", "web", "--stack", "no-such-stack"]) == 2
    assert "no crashloop table" in capsys.readouterr().err


def _secrets_crash(i, task_definition, base):
    """The i-th TaskFailedToStart (secrets unreachable) of a stable revision, a minute apart from `base`."""
    event = crash_from_sample(i, task_definition)
    at = base + timedelta(minutes=i)
    fresh = synth.task_stopped("secrets", service="web", task_definition=task_definition, at=at)
    for k in ("stopCode", "stoppedReason", "containers", "stoppedAt", "updatedAt"):
        event["detail"][k] = fresh["detail"][k]
    event["time"] = fresh["time"]
    return event


def test_failed_starts_of_a_stable_revision_schedule_a_nudge_that_forces_a_deployment(aws, handler, monkeypatch):
    """The alert creates a one-time EventBridge Scheduler schedule invoking the detector with the first
    nudge step; that step (delivered twice: at least once) forces one new deployment and schedules the next;
    once the service has running tasks of the revision the chain stops."""
    from datetime import datetime, timezone

    scheduler = boto3.client("scheduler", region_name=REGION)
    scheduler.create_schedule_group(Name="crashloop-nudges")
    monkeypatch.setenv("NUDGE_SCHEDULE_GROUP", "crashloop-nudges")
    monkeypatch.setenv("NUDGE_SCHEDULER_ROLE_ARN", "arn:aws:iam::123456789012:role/nudge-scheduler")
    from tootstack.crashloop.runtime import Runtime

    base = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)   # the handler runs on the wall clock
    results = [handler(_secrets_crash(i, aws.td[0], base), _Context()) for i in range(3)]
    assert [r["action"] for r in results] == [None, None, "alert"] and results[-1]["nudge_at"]
    [listed] = scheduler.list_schedules(GroupName="crashloop-nudges")["Schedules"]
    schedule = scheduler.get_schedule(Name=listed["Name"], GroupName="crashloop-nudges")
    assert schedule["ScheduleExpression"].startswith("at(") and schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["Arn"].endswith(":function:crashloop-detector")
    assert schedule["Target"]["RoleArn"].endswith("role/nudge-scheduler")
    step = json.loads(schedule["Target"]["Input"])
    assert step["action"] == "nudge" and step["service"] == "tootstack/web" and step["seq"] == 1
    [alert] = aws.alerts()
    assert "forces a new deployment from " + results[-1]["nudge_at"] in alert["Message"]

    calls = []
    monkeypatch.setattr("botocore.client.BaseClient._make_api_call", _spy(calls))
    first = handler(step, _Context())
    second = handler(step, _Context())              # the scheduler delivered it twice
    assert first["action"] == "nudge" and first["forced_new_deployment"] is True and second == first
    assert [c for c in calls if c[0] == "UpdateService"] == [("UpdateService", {"cluster": "tootstack", "service": "web",
                                                                                "forceNewDeployment": True})]
    names = sorted(s["Name"] for s in scheduler.list_schedules(GroupName="crashloop-nudges")["Schedules"])
    assert len(names) == 2 and names[1].endswith("-2")   # the next step (in AWS the fired one-time schedule deletes itself)
    assert json.loads(scheduler.get_schedule(Name=names[1], GroupName="crashloop-nudges")["Target"]["Input"])["seq"] == 2

    # a task of the revision runs now: the next step stops the chain, forces nothing, schedules nothing
    runtime = Runtime()
    describe = runtime.ecs.describe_services

    def running(**kwargs):
        found = describe(**kwargs)
        for d in found["services"][0]["deployments"]:
            d["runningCount"] = 1
        return found

    runtime.ecs.describe_services = running
    calls.clear()
    stopped = runtime.handle_nudge({**step, "seq": 2})
    assert stopped["action"] == "nudge_stopped" and "RUNNING" in stopped["reason"]
    assert not [c for c in calls if c[0] in ("UpdateService", "CreateSchedule")]


def _spy(calls):
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def spy(self, operation, params):
        calls.append((operation, params))
        return original(self, operation, params)

    return spy


def test_a_malformed_nudge_is_a_clear_error_and_changes_nothing(aws, handler):
    from tootstack.crashloop.runtime import Runtime
    from tootstack.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"malformed crashloop nudge: service: .*; episode: Field required; seq: .*greater than or equal to 1"):
        Runtime().handle_nudge({"action": "nudge", "service": "web", "seq": 0})
    assert aws.service()["desiredCount"] == 2

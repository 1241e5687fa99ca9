"""Property-based tests over every event input: crashloop ECS events and resume, CloudFormation custom
resource requests, Redis rotation steps.

The property, as in test_fuzz_console.py: a clear InvalidInput (or the documented result), never another
exception, and when refused no state change (moto's state, tests/emulated/fuzz_support.py aws_state, and the
real redis-server's ACLs). Custom resources: every request that carries an http(s) ResponseURL gets
exactly one answer, whatever else it holds (a stack waiting for an answer hangs for an hour).

Input classes tried, per entry point:
- crashloop events: arbitrary JSON; the sample ECS Task State Change event with one field replaced by
  arbitrary JSON (detail-type, ids, exit codes as strings or Unicode digits, timestamps, nested shapes).
- crashloop resume: arbitrary service / cluster / desired_count (negative, bool, float, Unicode digits).
- custom resources (secrets bootstrap, first-boot start, image mirror): requests with any subset of
  RequestType / ResponseURL / StackId / RequestId / LogicalResourceId / ResourceProperties, each
  missing, null, of the wrong type or hostile text; properties of any shape.
- rotation: Step, SecretId and ClientRequestToken arbitrary or near-valid (other secrets, unknown
  versions, steps out of order), arbitrary Action values.
- first-boot lock: arbitrary Action and Execution (not an execution ARN).
"""

import copy
import json
import uuid

import boto3
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tootstack.errors import InvalidInput
from tootstack_dev.local.aws import LambdaContext, LocalAws
from tootstack_dev.local.redis import RedisServer
from tootstack_dev.local.template import LocalFunction, project_root
from tootstack.redis_auth import entry
from tootstack.redis_auth.backends import AclBackend
from tootstack.redis_auth.credentials import Endpoint
from tootstack.redis_auth.rotation import STEPS, RedisRotation

from tests.fixtures.cfn import response_server
from tests.emulated.fuzz_support import FEW, FUZZ, JSON, TEXT, aws_state, redis_acl

ROOT = project_root()
REGION = "us-east-1"
TABLE = "fz-crashloop"
SAMPLE = json.loads((ROOT / "events/crashloop_detector.json").read_text())
pytestmark = [pytest.mark.filterwarnings("ignore:No application metrics to publish"),
              pytest.mark.filterwarnings("ignore:No idempotency key value found"),
              pytest.mark.xdist_group("fuzz-events")]   # one worker builds the module's world once


@pytest.fixture(scope="module")
def world():
    patch = pytest.MonkeyPatch()
    with response_server() as (url, received), LocalAws(region=REGION), RedisServer(tls=True) as redis_server:
        ddb, ecs = boto3.client("dynamodb", region_name=REGION), boto3.client("ecs", region_name=REGION)
        sm = boto3.client("secretsmanager", region_name=REGION)
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])
        ecs.create_cluster(clusterName="tootstack")
        td = ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "m:1", "memory": 512}])
        ecs.create_service(cluster="tootstack", serviceName="web", desiredCount=2,
                           taskDefinition=td["taskDefinition"]["taskDefinitionArn"])
        for key, value in {"CRASHLOOP_TABLE": TABLE, "CLUSTER_NAME": "tootstack", "CRASH_THRESHOLD": "100000",
                           "CRASH_WINDOW_MINUTES": "10", "STACK_NAME": "fz", "REPOSITORIES": json.dumps({"mastodon-zz9": "x"}),
                           "PARAMETER_PREFIX": "/fz/images", "POWERTOOLS_SERVICE_NAME": "tootstack",
                           "FIRST_BOOT_LOCK_PARAMETER": "/fz/first-boot/lock"}.items():
            patch.setenv(key, value)
        redis_secret = sm.create_secret(Name="fz/redis", SecretString=json.dumps(
            {"username": "mastodon", "password": "initial-" + uuid.uuid4().hex}))["ARN"]
        endpoint = Endpoint(redis_server.host, redis_server.port, tls=True, ca_file=redis_server.ca_file)
        rotation = RedisRotation.direct(sm, redis_secret, AclBackend(redis_server.admin_client, persist=False), endpoint)
        rotation.setup()
        handlers = {name: LocalFunction(f"FuzzEv{name}", ROOT / "functions" / name, "app.handler", {}).entrypoint
                    for name in ("crashloop_detector", "secrets_bootstrap", "mirror", "deploy_guard", "first_boot_lock")}

        def call(name, event):
            return handlers[name](event, LambdaContext(name))

        acl_client = redis_server.admin_client()
        yield type("World", (), dict(call=staticmethod(call), url=url, received=received, rotation=rotation,
                                     redis=acl_client, redis_secret=redis_secret, sm=sm))
        acl_client.close()
    patch.undo()


def refused_without_change(world, run):
    before = (aws_state(REGION), redis_acl(world.redis))
    try:
        return run()
    except InvalidInput as exc:
        assert str(exc)
        assert (aws_state(REGION), redis_acl(world.redis)) == before, "state changed on refused input"
        return None


# --- crashloop -------------------------------------------------------------------------------------

PATHS = [("id",), ("detail-type",), ("source",), ("time",), ("resources",), ("detail",), ("detail", "containers"),
         ("detail", "stopCode"), ("detail", "group"), ("detail", "clusterArn"), ("detail", "taskDefinitionArn"),
         ("detail", "stoppedAt"), ("detail", "lastStatus"), ("detail", "containers", 0, "exitCode"),
         ("detail", "containers", 0, "name"), ("detail", "startedBy")]


def _mutated(path, value):
    event = copy.deepcopy(SAMPLE)
    event["id"] = str(uuid.uuid4())
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


CRASHLOOP_EVENTS = JSON | st.builds(_mutated, st.sampled_from(PATHS), JSON | st.sampled_from(["²", "４", "-1", "1e9", ""]))


@FEW
@given(event=CRASHLOOP_EVENTS)
def test_crashloop_events_are_processed_or_refused(world, event):
    result = refused_without_change(world, lambda: world.call("crashloop_detector", event))
    if result is not None:
        assert set(result) >= {"event_id", "stop_kind", "crash", "action"} and result["action"] is None


@FEW
@given(service=TEXT | JSON, cluster=TEXT | JSON | st.none(), desired=JSON | st.sampled_from(["²", "４", -1, True, 1.5]))
def test_crashloop_resume_of_anything_not_halted_is_refused_without_change(world, service, cluster, desired):
    event = {"action": "resume", "service": service, "cluster": cluster, "desired_count": desired}
    assert refused_without_change(world, lambda: world.call("crashloop_detector", event)) is None


# --- custom resources ------------------------------------------------------------------------------

def _request(fields, props, kind):
    event = {"ResponseURL": "<ours>", "RequestType": "Create", "StackId": "arn:aws:cloudformation:us-east-1:1:stack/s/1",
             "RequestId": str(uuid.uuid4()), "LogicalResourceId": "Thing", "ResourceType": kind, "ResourceProperties": props}
    for key, value in fields.items():
        if value == "<absent>":
            event.pop(key, None)
        else:
            event[key] = value
    return event


FIELD = st.sampled_from(["<absent>", None, "", "Create", "Update", "Delete", "Destroy", "<ours>"]) | TEXT | JSON
REQUESTS = st.builds(
    _request,
    st.dictionaries(st.sampled_from(["RequestType", "StackId", "RequestId", "LogicalResourceId", "PhysicalResourceId",
                                     "ResponseURL"]), FIELD, max_size=3),
    JSON | st.none() | st.fixed_dictionaries({}, optional={"Images": JSON, "AppSecretArn": TEXT, "StartStateMachineArn": TEXT}),
    st.sampled_from(["Custom::SecretsBootstrap", "Custom::FirstBootStart", "Custom::ImageMirror"]),
)


@FUZZ
@given(template=REQUESTS, function=st.sampled_from(["secrets_bootstrap", "mirror", "deploy_guard"]))
def test_custom_resource_requests_are_always_answered(world, template, function):
    event = {k: (world.url if v == "<ours>" else v) for k, v in template.items()}
    url = event.get("ResponseURL")
    answerable = url == world.url
    # A fuzzed URL other than ours is never called by this test (it could name anything).
    assume(answerable or not (isinstance(url, str) and url.lower().startswith(("http://", "https://"))))
    props = event.get("ResourceProperties")
    assume(not (function == "mirror" and "mastodon-zz9" in json.dumps(props)))
    custom = function == "secrets_bootstrap" or ("RequestType" in event and "ResponseURL" in event)
    world.received.clear()
    before = aws_state(REGION)
    try:
        world.call(function, event)
    except InvalidInput as exc:
        assert not (answerable and custom), f"an answerable request was not answered: {exc}"
        assert world.received == []
    else:
        assert answerable and custom
        assert len(world.received) == 1, "exactly one answer"
        answer = world.received[0]
        if answer["Status"] == "SUCCESS":
            first_boot = isinstance(props, dict) and bool(props.get("StartStateMachineArn"))
            assert event["RequestType"] == "Delete" or (function == "secrets_bootstrap" and first_boot
                                                        and event["RequestType"] == "Update"), answer
        else:
            assert answer["Status"] == "FAILED" and answer["Reason"]
    assert aws_state(REGION)["secrets"] == before["secrets"]


# --- first-boot lock ------------------------------------------------------------------------------

@FEW
@given(action=st.sampled_from(["lock", "unlock", "Lock", "lock ", ""]) | TEXT | JSON,
       execution=st.sampled_from(["first-boot-1", "arn", ""]) | TEXT | JSON)
def test_first_boot_lock_requests_refused_without_change(world, action, execution):
    """Only {"Action": "lock"|"unlock", "Execution": <an ARN>} reaches SSM (tootstack.first_boot_events)."""
    assume(not (action in ("lock", "unlock") and isinstance(execution, str) and execution.startswith("arn:")))
    event = {"Action": action, "Execution": execution}
    assert refused_without_change(world, lambda: world.call("first_boot_lock", event)) is None


# --- rotation --------------------------------------------------------------------------------------

@FUZZ
@given(step=st.sampled_from([*STEPS, "dropSecret", "createsecret", ""]) | TEXT | JSON,
       secret=st.sampled_from(["<ours>", "<other>", ""]) | TEXT,
       token=st.sampled_from(["<new>", "<current>", ""]) | TEXT | JSON,
       action=st.none() | st.sampled_from(["setup ", "Resume", "rotate"]) | TEXT)
def test_rotation_events_refused_without_change(world, step, secret, token, action):
    stages = world.sm.describe_secret(SecretId=world.redis_secret)["VersionIdsToStages"]
    current = next(v for v, s in stages.items() if "AWSCURRENT" in s)
    secret_id = {"<ours>": world.redis_secret, "<other>": "fz/admin-staging"}.get(secret, secret)
    token = {"<new>": str(uuid.uuid4()), "<current>": current}.get(token, token) if isinstance(token, str) else token
    event = {"Step": step, "SecretId": secret_id, "ClientRequestToken": token}
    if action is not None:
        event = {"Action": action}
    # The documented, state-changing requests: a real createSecret of our secret, setup and resume.
    assume(not (event.get("Step") == "createSecret" and secret_id == world.redis_secret and isinstance(token, str) and token))
    assume(event.get("Action") not in ("setup", "resume"))
    assume(not (secret_id == world.redis_secret and token == current and step in STEPS))  # "already current": a no-op
    assert refused_without_change(world, lambda: entry.handle(event, world.rotation)) is None

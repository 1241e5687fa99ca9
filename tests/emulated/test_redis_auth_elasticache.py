"""ElastiCache RBAC backend: moto where it models the calls (CreateUser/DescribeUsers), and a recorded
contract elsewhere: every request is checked against botocore's ElastiCache model (parameter
validation) and every answer against the response shape, through botocore's Stubber, while a small
model of the user's password set decides what AUTH would accept."""

import json
import uuid

import boto3
import pytest
from botocore.stub import Stubber

from tootstack.errors import TootstackError
from tootstack.redis_auth.backends import MASTODON_ACCESS_STRING, ElastiCacheRbacBackend
from tootstack.redis_auth.credentials import AuthenticationFailed, Credential
from tootstack.redis_auth.rotation import CURRENT, STEPS, RedisRotation

REGION = "us-east-1"
USER_ID = "tootstack-mastodon"
GROUP_ID = "tootstack-redis"


def test_put_user_against_moto(local_aws):
    ec = boto3.client("elasticache", region_name=REGION)
    backend = ElastiCacheRbacBackend(ec, USER_ID, GROUP_ID, sleep=lambda s: None)
    backend.put_user(Credential("mastodon", "m" * 32))
    user = ec.describe_users(UserId=USER_ID)["Users"][0]
    assert user["UserName"] == "mastodon" and user["Status"] == "active"
    assert user["AccessString"] == MASTODON_ACCESS_STRING
    assert user["Authentication"]["PasswordCount"] == 1
    assert "m" * 32 not in json.dumps(user, default=str)


class ContractElastiCache:
    """A boto3 ElastiCache client whose answers come from a model of users/groups, with every request
    and answer validated by botocore's Stubber against the service model."""

    def __init__(self):
        self.client = boto3.client("elasticache", region_name=REGION)
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.exceptions = self.client.exceptions
        self.users = {"default-off": {"name": "default", "passwords": [], "status": "active", "access": "off -@all"}}
        self.group = {"UserIds": ["default-off"], "Status": "active"}
        self.replication_group = {"UserGroupIds": [], "Status": "available"}
        self.calls = []

    def _user_shape(self, user_id):
        u = self.users[user_id]
        status = u["status"]
        if status != "active":
            u["status"] = "active"   # asynchronous change: done by the next poll
        return {"UserId": user_id, "UserName": u["name"], "Status": status, "Engine": "redis",
                "AccessString": u["access"], "UserGroupIds": [GROUP_ID] if user_id in self.group["UserIds"] else [],
                "Authentication": {"Type": "password", "PasswordCount": len(u["passwords"])},
                "ARN": f"arn:aws:elasticache:{REGION}:123456789012:user:{user_id}"}

    def _call(self, op, params, response=None, error=None):
        self.calls.append((op, params))
        if error:
            self.stubber.add_client_error(op, service_error_code=error, http_status_code=404, expected_params=params)
        else:
            self.stubber.add_response(op, response, expected_params=params)
        return getattr(self.client, op)(**params)

    def describe_users(self, **params):
        if params["UserId"] not in self.users:
            return self._call("describe_users", params, error="UserNotFound")
        return self._call("describe_users", params, {"Users": [self._user_shape(params["UserId"])]})

    def create_user(self, **params):
        self.users[params["UserId"]] = {"name": params["UserName"], "passwords": list(params["Passwords"]),
                                        "status": "creating", "access": params["AccessString"]}
        return self._call("create_user", params, {k: v for k, v in self._user_shape(params["UserId"]).items() if k != "UserGroupIds"})

    def modify_user(self, **params):
        user = self.users[params["UserId"]]
        user["passwords"] = list(params.get("Passwords", user["passwords"]))
        user["status"] = "modifying"
        return self._call("modify_user", params, {"UserId": params["UserId"], "Status": "modifying"})

    def describe_user_groups(self, **params):
        group = {"UserGroupId": GROUP_ID, "Status": self.group["Status"], "Engine": "redis", "UserIds": list(self.group["UserIds"])}
        self.group["Status"] = "active"
        return self._call("describe_user_groups", params, {"UserGroups": [group]})

    def modify_user_group(self, **params):
        self.group["UserIds"] += params.get("UserIdsToAdd", [])
        self.group["Status"] = "modifying"
        return self._call("modify_user_group", params, {"UserGroupId": GROUP_ID, "Status": "modifying"})

    def describe_replication_groups(self, **params):
        rg = {"ReplicationGroupId": "tootstack-redis", "Status": self.replication_group["Status"],
              "UserGroupIds": list(self.replication_group["UserGroupIds"]), "TransitEncryptionEnabled": True}
        self.replication_group["Status"] = "available"
        return self._call("describe_replication_groups", params, {"ReplicationGroups": [rg]})

    def modify_replication_group(self, **params):
        self.replication_group["UserGroupIds"] += params.get("UserGroupIdsToAdd", [])
        self.replication_group["Status"] = "modifying"
        return self._call("modify_replication_group", params, {"ReplicationGroup": {"ReplicationGroupId": "tootstack-redis", "Status": "modifying"}})

    def accepts(self, credential):
        """What AUTH on the cluster would do with this credential (an open cluster knows no users)."""
        if GROUP_ID not in self.replication_group["UserGroupIds"]:
            return False
        for user_id, user in self.users.items():
            if user["name"] == credential.username and user_id in self.group["UserIds"]:
                return user["access"].startswith("on") and credential.password in user["passwords"]
        return False


@pytest.fixture
def contract(local_aws):
    ec = ContractElastiCache()
    sm = boto3.client("secretsmanager", region_name=REGION)
    arn = sm.create_secret(Name="tootstack/redis", SecretString=json.dumps({"username": "mastodon", "password": "c" * 40}))["ARN"]
    checked = []

    def verifier(credential, what):
        checked.append(what)
        if not ec.accepts(credential):
            raise AuthenticationFailed(f"{what} for user {credential.username} is refused")

    backend = ElastiCacheRbacBackend(ec, USER_ID, GROUP_ID, replication_group_id="tootstack-redis", wait_seconds=5, sleep=lambda s: None)
    rotation = RedisRotation(sm, arn, backend, verifier)
    yield ec, sm, arn, rotation, checked
    ec.stubber.assert_no_pending_responses()


def test_setup_creates_the_user_and_adds_it_to_the_group(contract):
    ec, sm, arn, rotation, _ = contract
    assert rotation.setup()["status"] == "user configured"
    ops = [op for op, _ in ec.calls]
    assert ops[:2] == ["describe_users", "create_user"]
    assert "modify_user_group" in ops and "modify_replication_group" in ops
    create = dict(ec.calls)["create_user"]
    assert create["AccessString"] == MASTODON_ACCESS_STRING and create["Engine"] == "valkey"
    attach = dict(ec.calls)["modify_replication_group"]
    assert attach == {"ReplicationGroupId": "tootstack-redis", "UserGroupIdsToAdd": [GROUP_ID], "ApplyImmediately": True}
    assert ec.accepts(Credential("mastodon", "c" * 40))
    ec.calls.clear()
    assert rotation.setup()["status"] == "already configured"
    assert [op for op, _ in ec.calls] == ["describe_user_groups", "describe_replication_groups"]  # checks only


def test_setup_refuses_a_group_with_the_open_builtin_default(contract):
    ec, sm, arn, rotation, _ = contract
    ec.group["UserIds"].append("default")
    with pytest.raises(TootstackError, match="built-in open `default` user"):
        rotation.setup()


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_rotation_keeps_two_passwords_until_finish(contract, stop_after):
    ec, sm, arn, rotation, checked = contract
    rotation.setup()
    old = Credential("mastodon", "c" * 40)
    token = str(uuid.uuid4())
    for step in STEPS[:stop_after]:
        rotation.run_step(step, token)
    assert ec.accepts(old)                                  # interrupted here: Mastodon still connects
    for step in STEPS:                                      # re-run completes
        rotation.run_step(step, token)
    new_doc = json.loads(sm.get_secret_value(SecretId=arn, VersionStage=CURRENT)["SecretString"])
    new = Credential("mastodon", new_doc["password"])
    assert ec.accepts(new) and not ec.accepts(old)
    modify = [p["Passwords"] for op, p in ec.calls if op == "modify_user"]
    assert modify[0] == [old.password, new.password] and modify[-1] == [new.password]
    assert "PENDING" in " ".join(checked) or "AWSPENDING" in checked


class Services:
    """ECS as seen by the rotation: a forced redeploy moves the tasks onto AWSCURRENT once the rollout
    is confirmed; until then they keep the password they started with."""

    def __init__(self, sm, arn):
        self.sm, self.arn, self.services = sm, arn, ["web"]
        self.stable = True
        self.tasks_hold = self._current()

    def _current(self):
        return json.loads(self.sm.get_secret_value(SecretId=self.arn, VersionStage=CURRENT)["SecretString"])["password"]

    def redeploy(self):
        self.target = self._current()

    def wait(self):
        from tootstack.redis_auth.redeploy import ServicesNotStable

        if not self.stable:
            raise ServicesNotStable("services still deploying, old Redis password kept valid; web: 1/2 running")
        self.tasks_hold = self.target


def test_unconfirmed_redeploy_is_finished_before_the_next_rotation_drops_a_password(contract):
    from tootstack.redis_auth.redeploy import ServicesNotStable

    ec, sm, arn, rotation, _ = contract
    rotation.setup()
    services = rotation.redeployer = Services(sm, arn)
    services.stable = False
    first = str(uuid.uuid4())
    for step in STEPS[:3]:
        rotation.run_step(step, first)
    with pytest.raises(ServicesNotStable):
        rotation.run_step("finishSecret", first)                    # AWSCURRENT moved, redeploy unconfirmed
    assert ec.accepts(Credential("mastodon", services.tasks_hold))  # the running tasks still connect
    second = str(uuid.uuid4())
    rotation.run_step("createSecret", second)                       # a new rotation starts (next schedule)
    with pytest.raises(ServicesNotStable):
        rotation.run_step("setSecret", second)                      # refuses to drop the tasks' password
    assert ec.accepts(Credential("mastodon", services.tasks_hold))
    services.stable = True
    for step in STEPS:
        rotation.run_step(step, second)
    assert services.tasks_hold == services._current() and ec.accepts(Credential("mastodon", services.tasks_hold))
    assert len(ec.users[USER_ID]["passwords"]) == 1


def test_attached_user_group_is_read_from_moto(local_aws):
    ec = boto3.client("elasticache", region_name=REGION)
    ec.create_replication_group(ReplicationGroupId="tootstack-redis", ReplicationGroupDescription="m", Engine="redis",
                                CacheNodeType="cache.t4g.micro", NumCacheClusters=1, TransitEncryptionEnabled=True,
                                UserGroupIds=[GROUP_ID])
    backend = ElastiCacheRbacBackend(ec, USER_ID, GROUP_ID, replication_group_id="tootstack-redis", wait_seconds=5, sleep=lambda s: None)
    backend.ensure_group_attached()   # already attached: DescribeReplicationGroups only (moto has no ModifyReplicationGroup)
    group = ec.describe_replication_groups(ReplicationGroupId="tootstack-redis")["ReplicationGroups"][0]
    assert group["UserGroupIds"] == [GROUP_ID] and group["Status"] == "available"

"""An existing stack updates to the composed templates without replacing anything that holds state.

`tests/data/stack-before-composition.json` is the stack as it was before template.yaml composed parts of
templates/ (every resource of `git show main:template.yaml` at that time with its type and the properties
that name it or whose change requires replacement). CloudFormation's update behaviours
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html):
a resource whose logical ID disappears from a template is deleted; one whose type changes, or whose
"Update requires: Replacement" property changes (e.g. AWS::RDS::DBInstance DBInstanceIdentifier, Engine,
DBSubnetGroupName; AWS::SecretsManager::Secret Name; AWS::ECR::Repository RepositoryName;
AWS::ElastiCache::ReplicationGroup ReplicationGroupId, CacheSubnetGroupName; AWS::S3::Bucket BucketName;
AWS::DynamoDB::Table TableName, KeySchema), is replaced: a new resource is created, then the old one is
deleted. A resource moved into a nested stack is such a delete plus a create in another stack, and the
create comes first: a moved resource with an explicit physical name collides with the old one still
holding it (the update fails). AWS::ECS::TaskDefinition is the exception: a Family holds many revisions,
so registering the moved definitions in the same family is an ordinary new revision.
"""

from __future__ import annotations

import copy
import json

from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
BEFORE = json.loads((ROOT / "tests/data/stack-before-composition.json").read_text())["Resources"]

# What holds state (data, keys, images) or what it depends on for its identity (network, subnet groups).
STATEFUL = ["Database", "DatabaseSubnetGroup", "MediaBucket", "AppSecrets", "DatabaseSecret", "RedisSecret",
            "SmtpSecret", "AdminPendingSecret", "MastodonRepository", "StreamingRepository", "Redis",
            "RedisSubnetGroup", "RedisParameterGroup", "RedisDefaultUser", "RedisMastodonUser", "RedisUserGroup",
            "CrashloopTable", "Vpc", "PublicSubnetA", "PublicSubnetB", "PrivateSubnetA", "PrivateSubnetB",
            "DatabaseSecurityGroup", "RedisSecurityGroup", "Cluster"]
# Properties that give a resource its physical name (a second resource may not hold it at the same time).
NAME_PROPERTIES = {"LogGroupName", "RoleName", "ServiceName", "FunctionName", "StateMachineName", "AlarmName",
                   "TopicName", "QueueName", "TableName", "BucketName", "RepositoryName", "Name",
                   "DBInstanceIdentifier", "DBSubnetGroupName", "ReplicationGroupId", "CacheSubnetGroupName",
                   "UserName", "UserId", "UserGroupId", "ClusterName", "GroupName"}
# ... and the other "Update requires: Replacement" properties the snapshot records.
REPLACEMENT_PROPERTIES = NAME_PROPERTIES | {"Engine", "DBName", "StorageEncrypted", "MasterUsername", "KmsKeyId",
                                            "AtRestEncryptionEnabled", "CacheParameterGroupFamily", "KeySchema",
                                            "CidrBlock", "VpcId", "AvailabilityZone", "GroupDescription"}
NAMES_SHARED_BY_REVISIONS = {"AWS::ECS::TaskDefinition"}   # Family: every registration is a new revision


def kept_problems(root: dict) -> list[str]:
    """Stateful resources of the old stack missing from the new root, retyped, or with a changed naming or
    replacement property."""
    problems = []
    resources = root["Resources"]
    for lid in STATEFUL:
        before = BEFORE[lid]
        now = resources.get(lid)
        if now is None:
            problems.append(f"{lid}: no longer in the root template (CloudFormation would delete it)")
            continue
        if now["Type"] != before["Type"]:
            problems.append(f"{lid}: type {before['Type']} -> {now['Type']} (replacement)")
        props_before, props_now = before.get("Properties", {}), now.get("Properties", {})
        for prop in sorted(REPLACEMENT_PROPERTIES & (set(props_before) | set(props_now))):
            if props_now.get(prop) != props_before.get(prop):
                problems.append(f"{lid}.{prop}: {props_before.get(prop)!r} -> {props_now.get(prop)!r} (replacement)")
    return problems


def moved_name_problems(root: dict, composed: dict) -> list[str]:
    """Resources of the old stack that left the root: each must either be gone for good or reappear in a
    part under the same type and without a physical name that the old resource still holds."""
    problems = []
    moved = [lid for lid in BEFORE if lid not in root["Resources"] and not BEFORE[lid]["Type"].startswith("AWS::Serverless")]
    for lid in moved:
        before = BEFORE[lid]
        now = composed["Resources"].get(lid)
        if now is None:
            problems.append(f"{lid}: deleted by the update (neither in the root nor in a part)")
            continue
        if now["Type"] != before["Type"]:
            problems.append(f"{lid}: type {before['Type']} -> {now['Type']}")
        if before["Type"] in NAMES_SHARED_BY_REVISIONS:
            continue
        for prop in NAME_PROPERTIES & set(now.get("Properties", {})):
            problems.append(f"{lid}: moved into a nested stack with an explicit {prop}: the create collides with "
                            "the old resource, which is deleted only after it")
    return problems


def test_stateful_resources_keep_their_logical_ids_types_and_names():
    assert kept_problems(load_template(ROOT / "template.yaml", compose=False)) == []


def test_control_a_renamed_or_changed_stateful_resource_is_caught():
    root = load_template(ROOT / "template.yaml", compose=False)
    renamed = copy.deepcopy(root)
    renamed["Resources"]["MastodonDatabase"] = renamed["Resources"].pop("Database")
    assert kept_problems(renamed) == ["Database: no longer in the root template (CloudFormation would delete it)"]
    changed = copy.deepcopy(root)
    changed["Resources"]["AppSecrets"]["Properties"]["Name"] = {"Fn::Sub": "${AWS::StackName}-app"}
    assert [p.split(":")[0] for p in kept_problems(changed)] == ["AppSecrets.Name"]


# What left the root so far (docs/templates.md lists them): the task definitions, into the instances of
# templates/mastodon-task.yaml, and the safety net's alarms and rule, into templates/safety-net.yaml.
MOVED = {"WebTaskDefinition", "SidekiqTaskDefinition", "SidekiqPullTaskDefinition", "CoreTaskDefinition",
         "ToolboxTaskDefinition", "AdminTaskDefinition",
         "DatabaseFreeStorageAlarm", "DatabaseCpuCreditsAlarm", "DatabaseConnectionsAlarm", "RedisMemoryAlarm",
         "WebTarget5xxAlarm", "StreamingTarget5xxAlarm", "LoadBalancer5xxAlarm", "WebUnhealthyTargetsAlarm",
         "StreamingUnhealthyTargetsAlarm", "CoreDownAlarm", "CoreTaskStoppedRule"}


def test_what_moved_into_a_part_carries_no_physical_name_the_old_stack_holds():
    root = load_template(ROOT / "template.yaml", compose=False)
    composed = load_template(ROOT / "template.yaml")
    assert {lid for lid in BEFORE if lid not in root["Resources"]} == MOVED
    assert moved_name_problems(root, composed) == []


def test_control_a_named_resource_moved_into_a_part_is_caught():
    root = load_template(ROOT / "template.yaml", compose=False)
    composed = load_template(ROOT / "template.yaml")
    root = copy.deepcopy(root)
    del root["Resources"]["WebLogGroup"]   # as if WebLogGroup (LogGroupName /tootstack/<stack>/web) had moved
    assert [p.split(":")[0] for p in moved_name_problems(root, composed)] == ["WebLogGroup"]
    composed = copy.deepcopy(composed)
    del composed["Resources"]["WebLogGroup"]
    assert moved_name_problems(root, composed) == ["WebLogGroup: deleted by the update (neither in the root nor in a part)"]


def test_stack_name_derived_names_stay_what_they_were():
    """Every name the old stack derived from AWS::StackName (families, secret names, log groups, STACK_NAME
    variables) is the same expression in the composed template: a part takes the root's name as
    RootStackName, since inside a nested stack AWS::StackName is the nested stack's own name."""
    composed = load_template(ROOT / "template.yaml")["Resources"]
    changed = []
    for lid, before in BEFORE.items():
        for prop, value in before.get("Properties", {}).items():
            if "AWS::StackName" in json.dumps(value) and composed.get(lid, {}).get("Properties", {}).get(prop) != value:
                changed.append(f"{lid}.{prop}")
    assert changed == []
    assert any(lid.endswith("TaskDefinition") for lid in BEFORE)  # families are among them

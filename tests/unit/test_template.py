"""template.yaml keeps the promises Mastodon and security depend on (asserted on the parsed template)."""

import copy
import re

import pytest

from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]

ALL_VIEWER = "216adef6-5c7f-47e4-b989-5492eafa07d3"       # managed origin request policy AllViewer
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # managed cache policy CachingDisabled
SECRET_LOOKING = re.compile(r"PASSWORD|SECRET|KEY_BASE|OTP|VAPID|ENCRYPTION|_PASS$|TOKEN")


def of_type(template, rtype):
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == rtype}


def branches(value):
    """Every value an Fn::If tree can take (both branches, recursively)."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, yes, no = value["Fn::If"]
        return branches(yes) + branches(no)
    return [value]


def ref_of(value):
    return value.get("Ref") if isinstance(value, dict) else None


def queues(command):
    """Sidekiq queue names of a container command (`-q name[,weight]` pairs)."""
    found = set()
    for argv in branches(command):
        if not isinstance(argv, list) or "sidekiq" not in argv:
            continue
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-q", "--queue"):
                found.add(str(value).split(",")[0])
    return found


def service_queues(template):
    """Service logical id -> the Sidekiq queues its task definition processes."""
    result = {}
    for lid, service in of_type(template, "AWS::ECS::Service").items():
        td = template["Resources"][ref_of(service["Properties"]["TaskDefinition"])]
        result[lid] = set().union(*(queues(c.get("Command")) for c in td["Properties"]["ContainerDefinitions"]))
    return result


def scheduler_services(template):
    return [lid for lid, q in service_queues(template).items() if "scheduler" in q]


def distribution():
    return RESOURCES["Distribution"]["Properties"]["DistributionConfig"]


def test_host_is_forwarded_unchanged_and_proto_is_https():
    config = distribution()
    default = config["DefaultCacheBehavior"]
    origin = next(o for o in config["Origins"] if o["Id"] == default["TargetOriginId"])
    assert default["OriginRequestPolicyId"] == ALL_VIEWER  # AllViewer forwards Host as the viewer sent it
    assert default["CachePolicyId"] == CACHING_DISABLED
    # the ALB is reached through a CloudFront VPC origin, which carries the protocol policy (tests/unit/test_vpc_origin.py)
    assert origin["VpcOriginConfig"]["VpcOriginId"] == {"Fn::GetAtt": ["AlbVpcOrigin", "Id"]}
    assert RESOURCES["AlbVpcOrigin"]["Properties"]["VpcOriginEndpointConfig"]["OriginProtocolPolicy"] == "https-only"
    headers = {h["HeaderName"]: h["HeaderValue"] for h in origin["OriginCustomHeaders"]}
    assert headers == {"X-Forwarded-Proto": "https"}
    assert origin["DomainName"] == {"Fn::GetAtt": ["LoadBalancer", "DNSName"]}


def test_media_comes_from_the_private_bucket_through_oac():
    config = distribution()
    media = next(b for b in config["CacheBehaviors"] if b["PathPattern"] == "/system/*")
    origin = next(o for o in config["Origins"] if o["Id"] == media["TargetOriginId"])
    assert origin["DomainName"] == {"Fn::GetAtt": ["MediaBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["MediaOriginAccessControl", "Id"]}
    assert set(media["AllowedMethods"]) == {"GET", "HEAD"}


def test_cloudfront_certificate_is_from_us_east_1():
    arn = distribution()["ViewerCertificate"]["AcmCertificateArn"]
    assert arn == {"Fn::If": ["InUsEast1", {"Ref": "Certificate"}, {"Ref": "CloudFrontCertificateArn"}]}
    rule = TEMPLATE["Rules"]["CloudFrontCertificateOutsideUsEast1"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "CloudFrontCertificateArn"}, ""]}]}


def test_exactly_one_service_processes_the_scheduler_queue_and_it_cannot_scale_out():
    # The core task (web + streaming + Sidekiq on every queue) is the only scheduler taker, in every profile.
    assert scheduler_services(TEMPLATE) == ["CoreService"]
    props = RESOURCES["CoreService"]["Properties"]
    # its count is what it runs (ServiceCounts), which first boot sets to 1 and nothing scales
    assert props["DesiredCount"] == {"Fn::GetAtt": ["ServiceCounts", "Core"]}
    first_boot = RESOURCES["FirstBootStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert first_boot["CoreDesiredCount"] == "1"
    assert props["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert {"scheduler", "default", "pull"} <= queues_of("CoreService")
    scaling = of_type(TEMPLATE, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert not any("CoreService" in str(t["Properties"].get("ResourceId")) for t in scaling.values())


def queues_of(service):
    return service_queues(TEMPLATE)[service]


def test_every_mastodon_queue_has_a_worker():
    processed = set().union(*service_queues(TEMPLATE).values())
    assert {"default", "push", "ingress", "mailers", "pull", "scheduler"} <= processed


def test_the_scheduler_check_can_fail():
    broken = copy.deepcopy(TEMPLATE)
    command = broken["Resources"]["SidekiqTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Command"]
    for argv in branches(command):
        argv += ["-q", "scheduler"]
    assert len(scheduler_services(broken)) == 2


def test_redis_is_encrypted_in_transit_and_at_rest_without_a_template_token():
    props = RESOURCES["Redis"]["Properties"]
    assert props["TransitEncryptionEnabled"] is True
    assert props["AtRestEncryptionEnabled"] is True
    assert props["Engine"] in ("valkey", "redis")
    assert "AuthToken" not in props


def plain_environments(template):
    """(owner, name) of every plain environment variable: task definition containers and functions."""
    for lid, td in of_type(template, "AWS::ECS::TaskDefinition").items():
        for container in td["Properties"]["ContainerDefinitions"]:
            for item in container.get("Environment", []):
                yield f"{lid}/{container['Name']}", item["Name"]
    for lid, fn in of_type(template, "AWS::Serverless::Function").items():
        for name in fn["Properties"].get("Environment", {}).get("Variables", {}):
            yield lid, name
    for name in template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}):
        yield "Globals", name


# A variable naming where a secret lives (REDIS_SECRET_ARN, ...) is fine; its value is not a secret.
POINTER = re.compile(r"_(ARNS?|IDS?|NAMES?|PARAMETER)$")


def secret_looking(name):
    return bool(SECRET_LOOKING.search(name)) and not POINTER.search(name)


def test_no_secret_in_a_plain_environment():
    offenders = [(owner, name) for owner, name in plain_environments(TEMPLATE) if secret_looking(name)]
    assert offenders == []


def test_the_secret_name_check_can_fail():
    assert secret_looking("DB_PASS") and secret_looking("SMTP_PASSWORD") and secret_looking("OTP_SECRET")
    assert not secret_looking("REDIS_SECRET_ARN") and not secret_looking("ONEOFF_SECRET_ARNS")
    assert not secret_looking("DB_HOST")


def test_secrets_are_injected_from_the_stack_secrets_the_execution_role_may_read():
    """Each task definition's execution role may read exactly the secrets that task injects."""
    def readable_by(role_id):
        statements = [
            s for p in RESOURCES[role_id]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
        ]
        return {ref_of(r) for s in statements if "secretsmanager:GetSecretValue" in str(s["Action"]) for r in s["Resource"]}

    all_injected = set()
    for lid, td in of_type(TEMPLATE, "AWS::ECS::TaskDefinition").items():
        injected = set()
        for container in td["Properties"]["ContainerDefinitions"]:
            for secret in container.get("Secrets", []):
                value = secret["ValueFrom"]["Fn::Sub"]
                match = re.fullmatch(r"\$\{(\w+)\}:([A-Za-z_]+)::", value)
                assert match, value
                injected.add(match.group(1))
        target = td["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"]
        role = target.split(".")[0] if isinstance(target, str) else target[0]
        assert injected == readable_by(role) or (injected < readable_by(role) and role == "TaskExecutionRole"), lid
        all_injected |= injected
    assert all_injected == {"AppSecrets", "DatabaseSecret", "RedisSecret", "SmtpSecret", "AdminPendingSecret"}
    # Only the admin task sees the pending admin password.
    assert readable_by("TaskExecutionRole") == {"AppSecrets", "DatabaseSecret", "RedisSecret", "SmtpSecret"}
    web = RESOURCES["WebTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    names = {s["Name"] for s in web["Secrets"]}
    assert {"SECRET_KEY_BASE", "OTP_SECRET", "DB_PASS", "REDIS_USER", "REDIS_PASSWORD", "SMTP_PASSWORD",
            "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"} <= names


def test_redis_url_is_tls_and_built_inside_the_container():
    """Mastodon only speaks TLS to Redis through REDIS_URL=rediss://...; the entry point assembles it
    from injected secrets, so it also holds for RunTask command overrides (which cannot change it)."""
    mastodon = 0
    scripts = set()
    for lid, td in of_type(TEMPLATE, "AWS::ECS::TaskDefinition").items():
        for container in td["Properties"]["ContainerDefinitions"]:
            secrets = {s["Name"] for s in container.get("Secrets", [])}
            if "REDIS_PASSWORD" not in secrets:
                continue
            mastodon += 1
            entry = container["EntryPoint"]
            assert entry[:2] == ["/bin/sh", "-c"], lid
            # user and password percent-encoded by the script's enc(); tests/contract runs it with real clients
            assert 'REDIS_URL="rediss://$(enc "$REDIS_USER"):$(enc "$REDIS_PASSWORD")@$REDIS_HOST:$REDIS_PORT/0"' in entry[2], lid
            assert entry[2].rstrip().endswith('exec "$@"'), lid
            scripts.add(entry[2])
            assert container["LinuxParameters"]["InitProcessEnabled"] is True, lid
            env = {e["Name"] for e in container["Environment"]}
            assert {"REDIS_HOST", "REDIS_PORT"} <= env and "REDIS_URL" not in env, lid
    assert mastodon >= 6
    assert len(scripts) == 1  # one entry point script, not drifting copies


def spot_task_definitions(template):
    spot = set()
    for service in of_type(template, "AWS::ECS::Service").values():
        providers = {p["CapacityProvider"] for p in service["Properties"].get("CapacityProviderStrategy", [])}
        if "FARGATE_SPOT" in providers:
            spot.add(ref_of(service["Properties"]["TaskDefinition"]))
    return spot


def test_task_definitions_are_arm64_unless_they_run_on_spot():
    spot = spot_task_definitions(TEMPLATE)
    for lid, td in of_type(TEMPLATE, "AWS::ECS::TaskDefinition").items():
        arch = td["Properties"]["RuntimePlatform"]["CpuArchitecture"]
        assert arch == ("X86_64" if lid in spot else "ARM64"), lid  # Fargate Spot is X86_64 only
        for container in td["Properties"]["ContainerDefinitions"]:
            assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_every_service_rolls_back_and_gets_a_public_ip():
    for lid, service in of_type(TEMPLATE, "AWS::ECS::Service").items():
        props = service["Properties"]
        assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}, lid
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED", lid
        # What it runs now (0 when created, before first boot): never a literal a deploy would reset it to.
        assert props["DesiredCount"] == {"Fn::GetAtt": ["ServiceCounts", props["ServiceName"].title().replace("-", "")
                                                        .replace("Ondemand", "OnDemand")]}, lid


def ingress_sources(template, group):
    """Every ingress source of a security group: inline rules and standalone ingress resources."""
    rules = []
    for rule in branches(template["Resources"][group]["Properties"].get("SecurityGroupIngress", [])):
        rules += rule if isinstance(rule, list) else [rule]
    rules += [
        r["Properties"] for r in of_type(template, "AWS::EC2::SecurityGroupIngress").values()
        if ref_of(r["Properties"]["GroupId"]) == group
    ]
    return [(ref_of(r.get("SourceSecurityGroupId")) or r.get("CidrIp") or r.get("SourcePrefixListId"),
             r["FromPort"], r["ToPort"]) for r in rules]


def test_database_only_from_task_security_groups():
    sources = ingress_sources(TEMPLATE, "DatabaseSecurityGroup")
    assert sorted(sources) == [("WebSecurityGroup", 5432, 5432), ("WorkerSecurityGroup", 5432, 5432)]


def test_redis_only_from_tasks_and_lambda():
    sources = ingress_sources(TEMPLATE, "RedisSecurityGroup")
    assert sorted(sources) == [("LambdaSecurityGroup", 6379, 6379), ("WebSecurityGroup", 6379, 6379),
                               ("WorkerSecurityGroup", 6379, 6379)]


def test_tasks_only_reachable_from_the_alb():
    assert sorted(ingress_sources(TEMPLATE, "WebSecurityGroup")) == [
        ("AlbSecurityGroup", 3000, 3000), ("AlbSecurityGroup", 4000, 4000)]
    assert ingress_sources(TEMPLATE, "WorkerSecurityGroup") == []
    with_cloudfront, _ = RESOURCES["AlbSecurityGroup"]["Properties"]["SecurityGroupIngress"]["Fn::If"][1:]
    assert [(r["SourcePrefixListId"], r["FromPort"]) for r in with_cloudfront] == [({"Ref": "CloudFrontPrefixListId"}, 443)]


def test_database_is_encrypted_private_backed_up_and_snapshotted():
    db = RESOURCES["Database"]
    props = db["Properties"]
    assert props["Engine"] == "postgres" and str(props["EngineVersion"]).split(".")[0] == "16"
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert props["BackupRetentionPeriod"] >= 1
    assert db["DeletionPolicy"] == "Snapshot" and db["UpdateReplacePolicy"] == "Snapshot"
    password = props["MasterUserPassword"]["Fn::Sub"]
    assert password == "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}"
    assert "GenerateSecretString" in RESOURCES["DatabaseSecret"]["Properties"]


def test_media_bucket_blocks_public_access_and_is_encrypted():
    props = RESOURCES["MediaBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    web_env = {e["Name"]: e["Value"] for e in RESOURCES["WebTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]}
    # The bucket is BucketOwnerEnforced (ACLs disabled): Mastodon must send no ACL at all, which it does only
    # for S3_PERMISSION="" (tests/contract/test_s3_contract.py has the sources); "private" would be refused.
    assert web_env["S3_PERMISSION"] == ""


@pytest.mark.parametrize("name", sorted(TEMPLATE["Parameters"]))
def test_parameters_are_validated(name):
    spec = TEMPLATE["Parameters"][name]
    bounded = spec["Type"] == "Number" and "MinValue" in spec and "MaxValue" in spec
    assert spec.get("AllowedPattern") or spec.get("AllowedValues") or bounded or spec["Type"].startswith("AWS::"), name


def test_image_pattern_accepts_references_and_rejects_junk():
    pattern = re.compile(TEMPLATE["Parameters"]["MastodonImage"]["AllowedPattern"])
    for good in ("ghcr.io/mastodon/mastodon:v4.5.2", "123456789012.dkr.ecr.us-east-1.amazonaws.com/mastodon/mastodon@sha256:" + "a" * 64,
                 "docker.io/tootsuite/mastodon:v4.3.0", "localhost:5000/m/m:latest"):
        assert pattern.fullmatch(good), good
    for bad in ("mastodon", "ghcr.io/mastodon/mastodon:v4.5.2; rm -rf /", "GHCR.IO/x/y", ""):
        assert not pattern.fullmatch(bad), bad


def test_no_output_exposes_a_secret():
    """A secret's ARN may be an output; its value (a dynamic reference, a password parameter) never."""
    no_echo = {name for name, spec in TEMPLATE["Parameters"].items() if spec.get("NoEcho")}
    for name, output in TEMPLATE["Outputs"].items():
        text = str(output["Value"])
        assert "resolve:" not in text and "SecretString" not in text, name
        assert not any(f"'Ref': '{p}'" in text or "${" + p + "}" in text for p in no_echo), name


def test_preflight_is_wired_read_only():
    fn = RESOURCES["PreflightFunction"]["Properties"]
    assert fn["Environment"]["Variables"]["CLUSTER_NAME"] == {"Ref": "Cluster"}
    actions = {a for s in fn["Policies"][0]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"ecs:ListServices", "ecs:DescribeServices", "ecs:DescribeTaskDefinition",
                       "secretsmanager:DescribeSecret", "ssm:DescribeParameters", "ses:GetEmailIdentity"}


def test_container_health_checks_hit_the_mastodon_health_endpoints():
    def check(lid, index=0):
        return " ".join(RESOURCES[lid]["Properties"]["ContainerDefinitions"][index]["HealthCheck"]["Command"])

    assert "localhost:3000/health" in check("WebTaskDefinition")
    assert "localhost:3000/health" in check("CoreTaskDefinition", 0)
    assert "localhost:4000/api/v1/streaming/health" in check("CoreTaskDefinition", 1)
    groups = {lid: r["Properties"]["HealthCheckPath"] for lid, r in of_type(TEMPLATE, "AWS::ElasticLoadBalancingV2::TargetGroup").items()}
    assert groups["WebTargetGroup"] == "/health" and groups["StreamingTargetGroup"] == "/api/v1/streaming/health"

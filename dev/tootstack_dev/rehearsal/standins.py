"""Resources moto's CloudFormation does not create, and what the rehearsal puts in their place.

moto warns about and skips resource types it does not model; a Ref or GetAtt to a skipped resource
would break the stack. Before deploying, the rehearsal removes such resources and replaces every
reference to them with the address of a real stand-in (redis-server for ElastiCache) or a marked
placeholder, and reports each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class StandIn:
    description: str                                   # what stands in, for the report
    ref: str                                           # value of {"Ref": logical_id}
    attributes: dict[str, Any] = field(default_factory=dict)  # GetAtt values by attribute name


Factory = Callable[[str, dict[str, Any]], StandIn]  # (logical_id, resource) -> StandIn


def default_stand_ins(redis: Any, region: str | None = None, stack_name: str | None = None) -> dict[str, Factory]:
    """Stand-in factories by resource type. `redis` is the running tootstack_dev.local.redis.RedisServer (or None);
    `region` is where secrets/certificates are created in moto (default: AWS_DEFAULT_REGION, else us-east-1);
    `stack_name` names secrets whose template Name is `${AWS::StackName}/...` as CloudFormation would."""
    import os

    region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"

    def elasticache(logical_id: str, resource: dict[str, Any]) -> StandIn:
        if redis is None:
            return _placeholder(logical_id, "nothing (no redis-server started)")
        host, port = redis.host, str(redis.port)
        scheme = "rediss" if getattr(redis, "tls", False) else "redis"
        return StandIn(
            f"real redis-server at {scheme}://{host}:{port}",
            ref=f"rehearsal-{logical_id.lower()}",
            attributes={
                "PrimaryEndPoint.Address": host,
                "PrimaryEndPoint.Port": port,
                "ReaderEndPoint.Address": host,
                "ReaderEndPoint.Port": port,
                "ConfigurationEndPoint.Address": host,
                "ConfigurationEndPoint.Port": port,
                "Endpoint.Address": host,
                "Endpoint.Port": port,
                "Arn": f"arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{logical_id.lower()}",
            },
        )

    def secret(logical_id: str, resource: dict[str, Any]) -> StandIn:
        arn = _moto_secret(logical_id, resource.get("Properties", {}), region, stack_name)
        return StandIn(f"moto Secrets Manager secret {arn} (created by the rehearsal)", ref=arn, attributes={"Id": arn})

    def certificate(logical_id: str, resource: dict[str, Any]) -> StandIn:
        arn = _moto_certificate(resource.get("Properties", {}), region)
        return StandIn(f"moto ACM certificate {arn} (issued, no DNS validation)", ref=arn, attributes={"Id": arn})

    return {
        "AWS::ElastiCache::ReplicationGroup": elasticache,
        "AWS::ElastiCache::ServerlessCache": elasticache,
        # moto's CloudFormation skips these; the rehearsal creates the real thing in moto's own
        # service so ECS `secrets` references, RDS passwords and ALB listeners resolve.
        "AWS::SecretsManager::Secret": secret,
        "AWS::CertificateManager::Certificate": certificate,
        "Custom::ImageMirror": _mirror_stand_in,
        "Custom::ServiceCounts": lambda logical_id, resource: _service_counts_stand_in(logical_id, resource, region),
        "Custom::VersionGuard": _deploy_guard_stand_in,
        "Custom::CoreBridge": _deploy_guard_stand_in,
        "Custom::CoreBridgeRelease": _deploy_guard_stand_in,
    }


def _service_counts_stand_in(logical_id: str, resource: dict[str, Any], region: str) -> StandIn:
    """Custom::ServiceCounts answered by its real code (tootstack.deploy_guard.service_counts) against moto's
    ECS, as CloudFormation would invoke it before the services: 0 for services not created yet (the first
    deploy), the running count on a redeploy (tootstack_dev.rehearsal.redeploy)."""
    import boto3

    from tootstack.deploy_guard import service_counts

    services = dict((resource.get("Properties") or {}).get("Services") or {})
    ecs = boto3.client("ecs", region_name=region)
    counts = {key: "0" for key in services}
    for cluster in ecs.list_clusters().get("clusterArns", []):
        found = service_counts(ecs, cluster, services)
        if any(v != "0" for v in found.values()) or ecs.list_services(cluster=cluster).get("serviceArns"):
            counts = found
            break
    return StandIn("its handler's answer (tootstack.deploy_guard.service_counts) against moto's ECS: "
                   + ", ".join(f"{k}={v}" for k, v in counts.items()),
                   ref=f"rehearsal-standin-{logical_id}", attributes={k: int(v) for k, v in counts.items()})


def _deploy_guard_stand_in(logical_id: str, resource: dict[str, Any]) -> StandIn:
    """VersionGuard, CoreBridge, CoreBridgeRelease: nothing to guard or bridge on creation (no service runs
    yet); on a redeploy the rehearsal runs their handlers' code where CloudFormation would
    (tootstack_dev.rehearsal.redeploy)."""
    return StandIn("not invoked on creation (nothing runs yet); the redeploy stage runs its handler's code in "
                   "CloudFormation's order", ref=f"rehearsal-standin-{logical_id}",
                   attributes={"Bridged": "no", "Version": "unchecked"})


def _mirror_stand_in(logical_id: str, resource: dict[str, Any]) -> StandIn:
    from tootstack_dev.rehearsal.mirror_stage import stand_in

    return stand_in(logical_id, resource)


def _moto_secret(logical_id: str, props: dict[str, Any], region: str, stack_name: str | None = None) -> str:
    """Create (once) a Secrets Manager secret shaped like the template's GenerateSecretString/SecretString,
    under the template's Name when it is a literal or `${AWS::StackName}/...` (the roles' policies grant by
    name), else `rehearsal/<logical id>`."""
    import json
    import re
    import secrets as random
    import string

    import boto3

    client = boto3.client("secretsmanager", region_name=region)
    declared = props.get("Name")
    if isinstance(declared, dict) and isinstance(declared.get("Fn::Sub"), str) and stack_name:
        declared = declared["Fn::Sub"].replace("${AWS::StackName}", stack_name)
    name = declared if isinstance(declared, str) and not re.search(r"\$\{", declared) else f"rehearsal/{logical_id}"
    generate = props.get("GenerateSecretString")
    if isinstance(props.get("SecretString"), str):
        value = props["SecretString"]
    elif isinstance(generate, dict):
        alphabet = string.ascii_letters + string.digits
        if not generate.get("ExcludePunctuation"):
            alphabet += "!#$%&()*+,-.:;<=>?[]^_{|}~"
        excluded = str(generate.get("ExcludeCharacters", ""))
        alphabet = "".join(c for c in alphabet if c not in excluded)
        generated = "".join(random.choice(alphabet) for _ in range(int(generate.get("PasswordLength", 32))))
        template, key = generate.get("SecretStringTemplate"), generate.get("GenerateStringKey")
        value = json.dumps({**json.loads(template), key: generated}) if template and key else generated
    else:
        value = "{}"
    try:
        return client.create_secret(Name=name, SecretString=value)["ARN"]
    except client.exceptions.ResourceExistsException:
        return client.describe_secret(SecretId=name)["ARN"]


def _moto_certificate(props: dict[str, Any], region: str) -> str:
    import boto3

    domain = props.get("DomainName")
    domain = domain if isinstance(domain, str) else "social.rehearsal.test"
    return boto3.client("acm", region_name=region).request_certificate(DomainName=domain, ValidationMethod="DNS")["CertificateArn"]


def _placeholder(logical_id: str, description: str) -> StandIn:
    return StandIn(description, ref=f"rehearsal-standin-{logical_id}")


# What the rehearsal does instead of a skipped resource, by type (for the report).
_EXPLANATIONS = {
    "AWS::Scheduler::Schedule": "not scheduled; the rehearsal runs the schedule's target as a stage",
    "AWS::Scheduler::ScheduleGroup": "not created; schedules are not run on a clock in a rehearsal",
    "Custom::": "not invoked by CloudFormation; the rehearsal stage that owns it runs its handler",
    "AWS::CloudFormation::CustomResource": "not invoked by CloudFormation; the rehearsal stage that owns it runs its handler",
}


def explain(resource_type: str) -> str:
    if resource_type.startswith("Custom::"):
        return _EXPLANATIONS["Custom::"]
    return _EXPLANATIONS.get(resource_type, "placeholder value for references (no local equivalent)")


def moto_models(resource_type: str) -> bool:
    """Whether moto's CloudFormation creates this type (custom resources are run by stages instead)."""
    if resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource":
        return False
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    return resource_type not in NULL_MODELS and resource_type in get_model_map()


def substitute(template: dict[str, Any], factories: dict[str, Factory],
               record: dict[str, StandIn] | None = None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Remove resources moto skips; point every reference at their stand-ins. Returns (template, skipped).
    `record`: filled with each stand-in by logical id (a redeploy reuses them, as CloudFormation keeps a
    resource it does not update)."""
    resources = template.get("Resources", {})
    stand_ins: dict[str, StandIn] = {}
    skipped: list[dict[str, str]] = []
    for logical_id, resource in list(resources.items()):
        rtype = resource.get("Type", "")
        if moto_models(rtype):
            continue
        factory = factories.get(rtype)
        stand_in = factory(logical_id, resource) if factory else _placeholder(logical_id, explain(rtype))
        stand_ins[logical_id] = stand_in
        if record is not None:
            record[logical_id] = stand_in
        skipped.append({"logical_id": logical_id, "type": rtype, "stand_in": stand_in.description, "ref": stand_in.ref})
        del resources[logical_id]

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in stand_ins:
                return stand_ins[node["Ref"]].ref
            if set(node) == {"Fn::GetAtt"}:
                target = node["Fn::GetAtt"]
                name, attr = (target.split(".", 1) if isinstance(target, str) else (target[0], ".".join(target[1:])))
                if name in stand_ins:
                    return stand_ins[name].attributes.get(attr, f"rehearsal-standin-{name}-{attr}")
            if "Fn::Sub" in node and len(node) == 1:
                return {"Fn::Sub": _rewrite_sub(node["Fn::Sub"], stand_ins, rewrite)}
            return {key: rewrite(value) for key, value in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    template = rewrite(template)
    for resource in template.get("Resources", {}).values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in stand_ins:
            del resource["DependsOn"]
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in stand_ins]
    return template, skipped


def _rewrite_sub(value: Any, stand_ins: dict[str, StandIn], rewrite: Callable[[Any], Any]) -> Any:
    """${Name} and ${Name.Attr} inside Fn::Sub strings that name a stand-in become literal values."""
    import re

    def replace(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name, _, attr = match.group(1).partition(".")
            if name not in stand_ins:
                return match.group(0)
            stand_in = stand_ins[name]
            return stand_in.attributes.get(attr, f"rehearsal-standin-{name}-{attr}") if attr else stand_in.ref

        return re.sub(r"\$\{([A-Za-z0-9]+(?:\.[A-Za-z0-9.]+)?)\}", one, text)

    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list) and value:
        return [replace(value[0]) if isinstance(value[0], str) else value[0], rewrite(value[1]) if len(value) > 1 else {}]
    return value

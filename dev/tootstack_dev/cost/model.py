"""The stack's running cost at no load, itemised from template.yaml and a dated price table.

Every figure comes from a resource the template deploys for the chosen parameters (conditions applied)
times a price in prices.json; every number that is not in the template (log volume, media size, idle
load balancer capacity units) is an assumption from prices.json and is printed with the result.
A month is 730 hours (AWS's convention), a day 24 hours.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tootstack_dev.cost.template_eval import ResourceRef, TemplateEvaluator
from tootstack.errors import InvalidInput

PRICES_FILE = Path(__file__).with_name("prices.json")
TARGETS_USD_PER_DAY = {"standard": ("below", 2.37), "micro": ("at or below", 1.50)}
# Fargate capacity -> its (vCPU-hour, GB-hour) price ids. Spot runs X86_64 only.
FARGATE_PRICES = {
    "ARM64 on-demand": ("fargate_arm64_vcpu_hour", "fargate_arm64_gb_hour"),
    "X86_64 on-demand": ("fargate_x86_vcpu_hour", "fargate_x86_gb_hour"),
    "X86_64 Spot": ("fargate_spot_x86_vcpu_hour", "fargate_spot_x86_gb_hour"),
}

# Resource types with no charge of their own at no load (or priced through another line item).
FREE_TYPES = {
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::InternetGateway", "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::RouteTable", "AWS::EC2::Route", "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::SecurityGroup",
    "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress", "AWS::EC2::VPCCidrBlock",
    "AWS::EC2::NetworkAcl", "AWS::EC2::NetworkAclEntry", "AWS::EC2::SubnetNetworkAclAssociation",
    "AWS::EC2::FlowLog",
    "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::InstanceProfile",
    "AWS::IAM::ServiceLinkedRole",
    "AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::ECS::ClusterCapacityProviderAssociations",
    "AWS::ElasticLoadBalancingV2::Listener", "AWS::ElasticLoadBalancingV2::ListenerRule",
    "AWS::ElasticLoadBalancingV2::ListenerCertificate", "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::RDS::DBSubnetGroup", "AWS::RDS::DBParameterGroup", "AWS::RDS::DBClusterParameterGroup",
    "AWS::ElastiCache::SubnetGroup", "AWS::ElastiCache::ParameterGroup", "AWS::ElastiCache::User",
    "AWS::ElastiCache::UserGroup",
    "AWS::S3::BucketPolicy", "AWS::CloudFront::OriginAccessControl", "AWS::CloudFront::CachePolicy",
    "AWS::CloudFront::OriginRequestPolicy", "AWS::CloudFront::ResponseHeadersPolicy", "AWS::CloudFront::Function",
    "AWS::CloudFront::VpcOrigin",
    "AWS::CertificateManager::Certificate", "AWS::Route53::RecordSet", "AWS::Route53::RecordSetGroup",
    "AWS::SecretsManager::SecretTargetAttachment", "AWS::SecretsManager::RotationSchedule",
    "AWS::SecretsManager::ResourcePolicy", "AWS::KMS::Alias",
    "AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::SNS::TopicPolicy", "AWS::Budgets::Budget",
    "AWS::Events::Rule", "AWS::Scheduler::Schedule", "AWS::Scheduler::ScheduleGroup",
    "AWS::Serverless::Function", "AWS::Lambda::Function", "AWS::Lambda::Permission", "AWS::Lambda::Version",
    "AWS::Lambda::EventInvokeConfig", "AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion",
    "AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine",
    "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::Logs::LogGroup", "AWS::Logs::MetricFilter", "AWS::CloudWatch::Alarm",
    "AWS::ECS::Service", "AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::RDS::DBInstance",
    "AWS::ElastiCache::ReplicationGroup", "AWS::ElastiCache::CacheCluster", "AWS::ElastiCache::ServerlessCache",
    "AWS::CloudFront::Distribution", "AWS::S3::Bucket", "AWS::SecretsManager::Secret", "AWS::SSM::Parameter",
    "AWS::KMS::Key", "AWS::Route53::HostedZone", "AWS::EC2::NatGateway", "AWS::EC2::EIP", "AWS::EC2::VPCEndpoint",
    "AWS::ECR::Repository", "AWS::ECR::PullThroughCacheRule", "AWS::ECR::RepositoryCreationTemplate",
    "AWS::ECR::RegistryPolicy", "AWS::DynamoDB::Table", "AWS::SES::EmailIdentity", "AWS::SES::ConfigurationSet",
    "AWS::CloudFormation::WaitConditionHandle", "AWS::CloudFormation::CustomResource", "AWS::Serverless::Api",
    "AWS::IAM::User", "AWS::IAM::AccessKey", "AWS::IAM::Group", "AWS::IAM::UserToGroupAddition",
    "AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Url",
    "AWS::Events::EventBus", "AWS::Events::Archive", "AWS::Pipes::Pipe", "AWS::StepFunctions::Activity",
    "AWS::ECR::ReplicationConfiguration", "AWS::ECR::RegistryScanningConfiguration", "AWS::SES::ReceiptRuleSet",
    "AWS::SES::Template", "AWS::SSM::Document", "AWS::Logs::SubscriptionFilter", "AWS::Logs::ResourcePolicy",
    "AWS::CloudWatch::CompositeAlarm", "AWS::CloudWatch::Dashboard",
}
# Types without a charge at no load that the model states rather than prices (DLQs empty, custom resources
# run only on deploy, an SMTP IAM user, ...). A CloudWatch dashboard is free up to 3 per account.
FREE_PREFIXES = ("Custom::",)


@dataclass
class LineItem:
    category: str
    name: str
    resources: list[str]
    quantity: float
    unit: str
    unit_price: float          # USD per unit per hour (basis "hour") or per unit per month (basis "month")
    basis: str                 # "hour" | "month"
    price_ids: list[str]
    detail: str = ""
    monthly: float = 0.0
    daily: float = 0.0

    def compute(self, hours_per_month: float) -> "LineItem":
        per_month = self.unit_price * self.quantity * (hours_per_month if self.basis == "hour" else 1)
        self.monthly = per_month
        self.daily = per_month * 24 / hours_per_month
        return self


@dataclass
class CostReport:
    profile: str
    region: str
    prices_date: str
    template: str
    items: list[LineItem]
    assumptions: list[str]
    warnings: list[str] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    public_ipv4: int = 0
    sidekiq_capacity: list[dict[str, Any]] = field(default_factory=list)   # per Sidekiq service: the options

    @property
    def monthly(self) -> float:
        return sum(i.monthly for i in self.items)

    @property
    def daily(self) -> float:
        return sum(i.daily for i in self.items)

    def target(self) -> dict[str, Any] | None:
        if self.profile not in TARGETS_USD_PER_DAY:
            return None
        relation, limit = TARGETS_USD_PER_DAY[self.profile]
        daily = round(self.daily, 4)
        met = daily < limit if relation == "below" else daily <= limit
        return {"relation": relation, "usd_per_day": limit, "met": met, "margin_usd_per_day": round(limit - daily, 4)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile, "region": self.region, "prices_date": self.prices_date, "template": self.template,
            "currency": "USD", "hours_per_month": 730,
            "total_monthly": round(self.monthly, 4), "total_daily": round(self.daily, 4),
            "target": self.target(), "public_ipv4_addresses": self.public_ipv4,
            "items": [{**asdict(i), "monthly": round(i.monthly, 4), "daily": round(i.daily, 4)} for i in self.items],
            "assumptions": self.assumptions, "warnings": self.warnings, "unpriced": self.unpriced,
            "sidekiq_capacity": self.sidekiq_capacity,
        }


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    for key, entry in data["prices"].items():
        if not entry.get("source") or not entry.get("checked"):
            raise InvalidInput(f"price {key} has no source or date in {path}")
    return data


# --- parsing helpers ----------------------------------------------------------------------------
def _parse_size(value: Any, unit: str, what: str) -> float:
    """ECS sizes: "0.5 vCPU" / "1 GB", or CPU units / MiB as a bare number (1024 = 1 vCPU / 1 GB)."""
    text = str(value).strip()
    m = re.fullmatch(r"([\d.]+)\s*" + unit, text, re.I)
    if m:
        return float(m.group(1))
    if re.fullmatch(r"\d+", text):
        return int(text) / 1024
    raise InvalidInput(f"cannot read task {what} {value!r}")


def parse_vcpu(value: Any) -> float:
    return _parse_size(value, "vcpu", "CPU")


def parse_memory_gb(value: Any) -> float:
    return _parse_size(value, "gb", "memory")


def _int(value: Any, default: int) -> int:
    if value is None or isinstance(value, (dict, ResourceRef)):
        return default
    return int(str(value))


def _bool(value: Any) -> bool:
    return str(value).lower() == "true"


def _mentions(value: Any, logical_id: str) -> bool:
    if isinstance(value, ResourceRef):
        return value.logical_id == logical_id
    if isinstance(value, str):
        return re.search(r"\$\{" + re.escape(logical_id) + r"(\.[A-Za-z]+)?\}", value) is not None
    if isinstance(value, dict):
        return any(_mentions(v, logical_id) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, logical_id) for v in value)
    return False


def split_capacity(count: int, strategy: list[dict[str, Any]]) -> dict[str, int]:
    """Tasks per capacity provider the way ECS places them: the base first, the rest by weight."""
    if not strategy:
        return {"FARGATE": count} if count else {}
    placed = {s["CapacityProvider"]: 0 for s in strategy}
    remaining = count
    for s in strategy:
        base = min(_int(s.get("Base"), 0), remaining)
        placed[s["CapacityProvider"]] += base
        remaining -= base
    weights = [(s["CapacityProvider"], _int(s.get("Weight"), 0)) for s in strategy]
    total = sum(w for _, w in weights)
    if remaining and total:
        # Largest remainder: deterministic, sums to `remaining`.
        shares = [(p, remaining * w / total) for p, w in weights]
        floors = {p: int(x) for p, x in shares}
        left = remaining - sum(floors.values())
        for p, x in sorted(shares, key=lambda t: (-(t[1] - int(t[1])), t[0]))[:left]:
            floors[p] += 1
        for p, n in floors.items():
            placed[p] += n
    elif remaining:
        placed[strategy[0]["CapacityProvider"]] += remaining
    return {p: n for p, n in placed.items() if n}


# --- the model ----------------------------------------------------------------------------------
class CostModel:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str], prices: dict[str, Any],
                 template_name: str = "template.yaml") -> None:
        self.prices = prices
        self.p = {k: v["usd"] for k, v in prices["prices"].items()}
        self.a = {k: v["value"] for k, v in prices["assumptions"].items()}
        self.hours = float(prices.get("hours_per_month", 730))
        self.evaluator = TemplateEvaluator(template, parameters, region=prices.get("region", "us-east-1"))
        self.resources = self.evaluator.resources()
        self.profile = str(self.evaluator.parameters.get("Profile", "default"))
        self.template_name = template_name
        self.items: list[LineItem] = []
        self.assumptions: list[str] = []
        self.warnings: list[str] = []
        self.public_ipv4 = 0
        self.running_tasks = 0
        self._ipv4_sources: list[str] = []
        self._task_log_groups: list[tuple[int, str | None]] = []   # (tasks, log group) per service
        self.sidekiq_capacity: list[dict[str, Any]] = []

    def _of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: r["Properties"] for k, r in self.resources.items() if r["Type"] in types}

    def _add(self, *args: Any, **kwargs: Any) -> LineItem:
        item = LineItem(*args, **kwargs).compute(self.hours)
        self.items.append(item)
        return item

    def _assume(self, key: str, text: str) -> None:
        line = f"{text} [{key}: {self.prices['assumptions'][key]['why']}]" if key else text
        if line not in self.assumptions:
            self.assumptions.append(line)

    def build(self) -> CostReport:
        self.assumptions.append(
            f"prices: {self.prices['region']} on-demand list prices dated {self.prices['date']} "
            f"(dev/tootstack_dev/cost/prices.json, source and date per figure); month = {self.hours:g} h, day = 24 h"
        )
        self.assumptions.append("no load: no traffic beyond health checks and background jobs; no free tier applied "
                                "except where stated (CloudFront, Lambda, Step Functions, Scheduler always-free tiers)")
        self.fargate()
        self.load_balancers()
        self.network_extras()
        self.databases()
        self.caches()
        self.cdn_and_storage()
        self.secrets_and_keys()
        self.monitoring()
        self.dns()
        self.ipv4()
        if not self._of_type("AWS::ECS::Service"):
            self.warnings.append("the template deploys no ECS service: the total leaves out Mastodon's compute")
        unpriced = sorted({f"{r['Type']} ({k})" for k, r in self.resources.items()
                           if r["Type"] not in FREE_TYPES and not r["Type"].startswith(FREE_PREFIXES)})
        if unpriced:
            self.warnings.append("resource types the model does not price: " + ", ".join(unpriced))
        self.assumptions.append("one-off tasks (migrations, maintenance, admin) run minutes a month and are not priced; "
                                "SQS dead-letter queues, custom resources (deploy-time Lambda runs), IAM users and "
                                "up to 3 CloudWatch dashboards cost nothing at no load")
        self.assumptions.append("data transfer: no inter-AZ or internet egress beyond CloudFront's free tier at no load")
        return CostReport(self.profile, self.prices["region"], self.prices["date"], self.template_name,
                          self.items, self.assumptions, self.warnings, unpriced, self.public_ipv4, self.sidekiq_capacity)

    # Fargate services --------------------------------------------------------------------------
    def _service_count(self, logical_id: str, props: dict[str, Any]) -> tuple[int, str]:
        raw = props.get("DesiredCount")
        if isinstance(raw, ResourceRef) and self.resources.get(raw.logical_id, {}).get("Type") == "Custom::ServiceCounts":
            # "What it runs now" (0 at creation): at steady state, the count first boot starts it with.
            desired, why = self._first_boot_count(raw.attribute), "the count first boot starts (ServiceCounts keeps it)"
        else:
            desired, why = _int(raw, 1), "DesiredCount"
        for target_id, target in self._of_type("AWS::ApplicationAutoScaling::ScalableTarget").items():
            if _mentions(target.get("ResourceId"), logical_id):
                low = _int(target.get("MinCapacity"), desired)
                return low, f"autoscaled {low}-{_int(target.get('MaxCapacity'), low)}, at no load its minimum ({target_id})"
        return desired, why

    def _first_boot_count(self, key: str) -> int:
        for machine in self._of_type("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine").values():
            value = (machine.get("DefinitionSubstitutions") or {}).get(f"{key}DesiredCount")
            if value is not None:
                return _int(value, 0)
        return 0

    def _default_strategy(self) -> list[dict[str, Any]]:
        for assoc in self._of_type("AWS::ECS::ClusterCapacityProviderAssociations").values():
            return assoc.get("DefaultCapacityProviderStrategy") or []
        for cluster in self._of_type("AWS::ECS::Cluster").values():
            return cluster.get("DefaultCapacityProviderStrategy") or []
        return []

    def fargate(self) -> None:
        services = self._of_type("AWS::ECS::Service")
        for logical_id, props in sorted(services.items()):
            count, why = self._service_count(logical_id, props)
            td_ref = props.get("TaskDefinition")
            if not isinstance(td_ref, ResourceRef) or td_ref.logical_id not in self.resources:
                self.warnings.append(f"{logical_id}: task definition is not a resource of this template; not priced")
                continue
            td = self.resources[td_ref.logical_id]["Properties"]
            vcpu, gb = parse_vcpu(td.get("Cpu")), parse_memory_gb(td.get("Memory"))
            arch = str((td.get("RuntimePlatform") or {}).get("CpuArchitecture", "X86_64")).upper()
            strategy = props.get("CapacityProviderStrategy") or ([] if props.get("LaunchType") else self._default_strategy())
            network = ((props.get("NetworkConfiguration") or {}).get("AwsvpcConfiguration") or {})
            public_ip = str(network.get("AssignPublicIp", "DISABLED")).upper() == "ENABLED"
            self.running_tasks += count
            groups = [((c.get("LogConfiguration") or {}).get("Options") or {}).get("awslogs-group")
                      for c in td.get("ContainerDefinitions") or []]
            group = next((g.logical_id for g in groups if isinstance(g, ResourceRef) and g.logical_id in self.resources), None)
            self._task_log_groups.append((count, group))
            if public_ip and count:
                self.public_ipv4 += count
                self._ipv4_sources.append(f"{logical_id}: {count} task(s) with a public IP")
            for provider, n in sorted(split_capacity(count, strategy).items()):
                spot = provider == "FARGATE_SPOT"
                if spot and arch != "X86_64":
                    self.warnings.append(f"{logical_id}: FARGATE_SPOT with {arch} cannot place tasks (Spot is X86_64 only)")
                label = "X86_64 Spot" if spot else "ARM64 on-demand" if arch == "ARM64" else "X86_64 on-demand"
                self._add("compute", f"Fargate {logical_id} ({label})", [logical_id, td_ref.logical_id], n, "task",
                          self._task_hour(label, vcpu, gb), "hour", list(FARGATE_PRICES[label]),
                          f"{n} task(s) x {vcpu:g} vCPU, {gb:g} GB ({why}){'; public IPv4' if public_ip else ''}")
            if any(s.get("CapacityProvider") == "FARGATE_SPOT" for s in strategy):
                self._assume("", f"{logical_id}: Spot priced at the dated observed Spot rate (it floats, 50-70% off on-demand)")
            self._compare_sidekiq_capacity(logical_id, props, td, vcpu, gb, arch, strategy, count)

    def _task_hour(self, capacity: str, vcpu: float, gb: float) -> float:
        vcpu_price, gb_price = FARGATE_PRICES[capacity]
        return vcpu * self.p[vcpu_price] + gb * self.p[gb_price]

    def _shares_task_definition_with_spot(self, logical_id: str, props: dict[str, Any]) -> bool:
        td = props.get("TaskDefinition")
        return any(other is not props and other.get("TaskDefinition") == td
                   and any(s.get("CapacityProvider") == "FARGATE_SPOT" for s in other.get("CapacityProviderStrategy") or [])
                   for other in self._of_type("AWS::ECS::Service").values())

    def _compare_sidekiq_capacity(self, logical_id: str, props: dict[str, Any], td: dict[str, Any], vcpu: float,
                                  gb: float, arch: str, strategy: list[dict[str, Any]], count: int) -> None:
        """Spot runs X86_64 only, so a Sidekiq service is either X86_64 on Spot or ARM64 on-demand;
        price one task of its size both ways (and X86_64 on-demand) and say which the template picked."""
        commands = [[str(c) for c in (container.get("Command") or [])] for container in td.get("ContainerDefinitions") or []]
        sidekiq = [c for c in commands if "sidekiq" in c]
        if not sidekiq:
            return
        queues = [c[i + 1].split(",")[0] for c in sidekiq for i, flag in enumerate(c[:-1]) if flag in ("-q", "--queue")]
        per_day = {label: self._task_hour(label, vcpu, gb) * 24 for label in FARGATE_PRICES}
        spot = any(s.get("CapacityProvider") == "FARGATE_SPOT" for s in strategy)
        chosen = "X86_64 Spot" if spot else f"{'ARM64' if arch == 'ARM64' else 'X86_64'} on-demand"
        if "scheduler" in queues:
            why = ("runs the only scheduler process: never Spot (an interruption stops scheduled jobs, and an "
                   "on-demand fallback running beside it would be a second scheduler)")
        elif spot:
            why = "interruptible work with an on-demand fallback twin: Spot is the cheapest"
        elif arch == "ARM64":
            why = "on-demand without interruptions: ARM64 is the cheapest on-demand"
        elif self._shares_task_definition_with_spot(logical_id, props):
            why = "the Spot service's on-demand fallback twin: same X86_64 task definition, runs only while Spot cannot"
        else:
            why = "X86_64 on-demand: ARM64 on-demand would be cheaper"
        self.sidekiq_capacity.append({
            "service": logical_id, "queues": queues, "vcpu": vcpu, "gb": gb, "tasks_at_no_load": count,
            "usd_per_task_day": {k: round(v, 4) for k, v in per_day.items()}, "chosen": chosen, "why": why,
        })

    # Load balancers --------------------------------------------------------------------------------
    def load_balancers(self) -> None:
        for logical_id, props in sorted(self._of_type("AWS::ElasticLoadBalancingV2::LoadBalancer").items()):
            kind = str(props.get("Type", "application"))
            nodes = len(props.get("Subnets") or props.get("SubnetMappings") or [None, None])
            self._add("network", f"{'ALB' if kind == 'application' else kind.upper()} {logical_id}", [logical_id], 1,
                      "ALB", self.p["alb_hour"], "hour", ["alb_hour"], f"{kind}, {props.get('Scheme', 'internet-facing')}, {nodes} AZ nodes")
            lcu = self.a["alb_idle_lcu"]
            self._add("network", f"ALB {logical_id} capacity units (idle)", [logical_id], lcu, "LCU",
                      self.p["alb_lcu_hour"], "hour", ["alb_lcu_hour"], f"{lcu:g} LCU average")
            self._assume("alb_idle_lcu", f"ALB at no load uses {lcu:g} LCU on average")
            if str(props.get("Scheme", "internet-facing")) == "internet-facing":
                self.public_ipv4 += nodes
                self._ipv4_sources.append(f"{logical_id}: {nodes} node addresses (internet-facing, one per AZ)")

    def network_extras(self) -> None:
        for logical_id in sorted(self._of_type("AWS::EC2::NatGateway")):
            self._add("network", f"NAT gateway {logical_id}", [logical_id], 1, "gateway", self.p["nat_gateway_hour"],
                      "hour", ["nat_gateway_hour"], "hourly charge (data processing extra)")
        eips = sorted(self._of_type("AWS::EC2::EIP"))
        if eips:
            self.public_ipv4 += len(eips)
            self._ipv4_sources.append(f"{', '.join(eips)}: Elastic IPs")
        for logical_id, props in sorted(self._of_type("AWS::EC2::VPCEndpoint").items()):
            if str(props.get("VpcEndpointType", "Gateway")) != "Interface":
                continue
            azs = len(props.get("SubnetIds") or [None])
            self._add("network", f"VPC interface endpoint {logical_id}", [logical_id], azs, "endpoint-AZ",
                      self.p["vpc_interface_endpoint_hour"], "hour", ["vpc_interface_endpoint_hour"], f"{azs} AZ(s)")

    def ipv4(self) -> None:
        if self.public_ipv4:
            self._add("network", "Public IPv4 addresses", [], self.public_ipv4, "address", self.p["public_ipv4_hour"],
                      "hour", ["public_ipv4_hour"], "; ".join(self._ipv4_sources))

    # Data stores ------------------------------------------------------------------------------------
    def databases(self) -> None:
        table = self.p["rds_instance_hour"]
        for logical_id, props in sorted(self._of_type("AWS::RDS::DBInstance").items()):
            cls = str(props.get("DBInstanceClass"))
            multi = 2 if _bool(props.get("MultiAZ", False)) else 1
            if cls not in table:
                self.warnings.append(f"{logical_id}: no price for {cls} in prices.json; not priced")
                continue
            self._add("database", f"RDS {logical_id} {cls}", [logical_id], multi, "instance", table[cls], "hour",
                      ["rds_instance_hour"], f"{props.get('Engine', 'postgres')}, {'Multi-AZ' if multi == 2 else 'single-AZ'}")
            storage = _int(props.get("AllocatedStorage"), 20) * multi
            stype = str(props.get("StorageType", "gp2"))
            self._add("database", f"RDS {logical_id} storage ({stype})", [logical_id], storage, "GB",
                      self.p["rds_gp3_gb_month"], "month", ["rds_gp3_gb_month"],
                      f"{storage} GB allocated; backups up to the allocated size are free")

    def caches(self) -> None:
        table = self.p["elasticache_redis_node_hour"]
        groups = self._of_type("AWS::ElastiCache::ReplicationGroup", "AWS::ElastiCache::CacheCluster")
        for logical_id, props in sorted(groups.items()):
            node = str(props.get("CacheNodeType"))
            if self.resources[logical_id]["Type"] == "AWS::ElastiCache::CacheCluster":
                nodes = _int(props.get("NumCacheNodes"), 1)
            elif props.get("NumCacheClusters") is not None:
                nodes = _int(props.get("NumCacheClusters"), 1)
            elif props.get("NumNodeGroups") is not None:
                nodes = _int(props.get("NumNodeGroups"), 1) * (_int(props.get("ReplicasPerNodeGroup"), 0) + 1)
            else:
                nodes = 1
            engine = str(props.get("Engine", "redis")).lower()
            if node not in table:
                self.warnings.append(f"{logical_id}: no price for {node} in prices.json; not priced")
                continue
            price, keys = table[node], ["elasticache_redis_node_hour"]
            if engine == "valkey":
                price, keys = price * (1 - self.p["elasticache_valkey_node_discount"]), keys + ["elasticache_valkey_node_discount"]
            self._add("cache", f"ElastiCache {logical_id} {node} ({engine})", [logical_id], nodes, "node", price, "hour",
                      keys, f"{nodes} node(s)")
        for logical_id, props in sorted(self._of_type("AWS::ElastiCache::ServerlessCache").items()):
            engine = "valkey" if str(props.get("Engine", "")).lower() == "valkey" else "redis"
            gb = max(self.a["serverless_cache_gb"], self.p[f"elasticache_serverless_{engine}_min_gb"])
            self._add("cache", f"ElastiCache Serverless {logical_id} ({engine}) storage", [logical_id], gb, "GB",
                      self.p[f"elasticache_serverless_{engine}_gb_hour"], "hour",
                      [f"elasticache_serverless_{engine}_gb_hour", f"elasticache_serverless_{engine}_min_gb"],
                      f"{gb:g} GB metered (the minimum)")
            ecpu_month = self.a["serverless_cache_million_ecpu_day"] * self.hours / 24
            self._add("cache", f"ElastiCache Serverless {logical_id} ({engine}) requests", [logical_id], ecpu_month,
                      "million ECPU", self.p[f"elasticache_serverless_{engine}_million_ecpu"], "month",
                      [f"elasticache_serverless_{engine}_million_ecpu"], f"{ecpu_month:g} M ECPU per month")
            self._assume("serverless_cache_gb", f"serverless cache holds {self.a['serverless_cache_gb']:g} GB")
            self._assume("serverless_cache_million_ecpu_day",
                         f"serverless cache serves {self.a['serverless_cache_million_ecpu_day']:g} M ECPU per day")

    def cdn_and_storage(self) -> None:
        dists = sorted(self._of_type("AWS::CloudFront::Distribution"))
        if dists:
            gb = self.a["cloudfront_gb_out_month"]
            over = max(0.0, gb - self.p["cloudfront_free_tb_month"] * 1024)
            self._add("cdn", f"CloudFront {', '.join(dists)} data out", dists, over, "GB", self.p["cloudfront_gb_out"],
                      "month", ["cloudfront_gb_out", "cloudfront_free_tb_month"],
                      f"{gb:g} GB/month out; first 1 TB and 10 M requests free")
            self._assume("cloudfront_gb_out_month", f"CloudFront serves {gb:g} GB/month")
        buckets = sorted(self._of_type("AWS::S3::Bucket"))
        if buckets:
            media = [b for b in buckets if "media" in b.lower()] or buckets[:1]
            gb = self.a["s3_media_gb"]
            self._add("storage", f"S3 {', '.join(media)} (Standard)", media, gb, "GB", self.p["s3_standard_gb_month"],
                      "month", ["s3_standard_gb_month"], f"{gb:g} GB stored; requests negligible at no load")
            self._assume("s3_media_gb", f"media bucket holds {gb:g} GB")
            others = [b for b in buckets if b not in media]
            if others:
                self.assumptions.append(f"other buckets ({', '.join(others)}) hold a negligible amount: not priced")
        repos = self._of_type("AWS::ECR::Repository", "AWS::ECR::PullThroughCacheRule", "AWS::ECR::RepositoryCreationTemplate")
        if repos:
            gb = self.a["ecr_image_gb"]
            self._add("storage", "ECR image storage", sorted(repos), gb, "GB", self.p["ecr_storage_gb_month"], "month",
                      ["ecr_storage_gb_month"], f"{gb:g} GB of mirrored images")
            self._assume("ecr_image_gb", f"ECR stores {gb:g} GB")
        tables = sorted(self._of_type("AWS::DynamoDB::Table"))
        if tables:
            self.assumptions.append(f"DynamoDB tables ({', '.join(tables)}): on-demand, kilobytes, inside the 25 GB free storage")

    def secrets_and_keys(self) -> None:
        secrets = sorted(self._of_type("AWS::SecretsManager::Secret"))
        if secrets:
            self._add("secrets", "Secrets Manager secrets", secrets, len(secrets), "secret",
                      self.p["secretsmanager_secret_month"], "month", ["secretsmanager_secret_month"], ", ".join(secrets))
        params = self._of_type("AWS::SSM::Parameter")
        advanced = sorted(k for k, v in params.items() if str(v.get("Tier", "Standard")) == "Advanced")
        if advanced:
            self._add("secrets", "SSM Advanced parameters", advanced, len(advanced), "parameter",
                      self.p["ssm_advanced_parameter_month"], "month", ["ssm_advanced_parameter_month"], ", ".join(advanced))
        if len(params) > len(advanced):
            self.assumptions.append(f"{len(params) - len(advanced)} SSM Standard-tier parameter(s): free")
        keys = sorted(self._of_type("AWS::KMS::Key"))
        if keys:
            self._add("secrets", "KMS customer managed keys", keys, len(keys), "key", self.p["kms_key_month"], "month",
                      ["kms_key_month"], ", ".join(keys))

    def monitoring(self) -> None:
        mb = self.a["log_mb_per_task_day"]
        if self.running_tasks:
            gb_month = self.running_tasks * mb / 1024 * self.hours / 24
            self._add("monitoring", "CloudWatch Logs ingestion", [], gb_month, "GB", self.p["cloudwatch_logs_ingest_gb"],
                      "month", ["cloudwatch_logs_ingest_gb"], f"{self.running_tasks} running task(s) x {mb:g} MB/day")
            self._assume("log_mb_per_task_day", f"each running task logs {mb:g} MB/day (split over its containers)")
            # Steady state: each task's volume is held for its log group's retention.
            default_days = self.a["log_retention_days_when_unset"]
            held_gb, groups, unset = 0.0, set(), False
            for count, group in self._task_log_groups:
                days = 0
                if group is not None:
                    groups.add(group)
                    days = _int(self.resources[group]["Properties"].get("RetentionInDays"), 0)
                unset = unset or (count > 0 and not days)
                held_gb += count * mb / 1024 * (days or default_days)
            if unset:
                self._assume("log_retention_days_when_unset", f"logs without a retention are priced as {default_days:g} days held")
            self._add("monitoring", "CloudWatch Logs storage", sorted(groups), held_gb, "GB",
                      self.p["cloudwatch_logs_store_gb_month"], "month", ["cloudwatch_logs_store_gb_month"],
                      "each task's logs held for its log group's retention (uncompressed size: an upper bound)")
        alarms = sorted(self._of_type("AWS::CloudWatch::Alarm"))
        tracking = sorted(k for k, v in self._of_type("AWS::ApplicationAutoScaling::ScalingPolicy").items()
                          if v.get("TargetTrackingScalingPolicyConfiguration"))
        count = len(alarms) + 2 * len(tracking)
        if count:
            self._add("monitoring", "CloudWatch alarms", alarms + tracking, count, "alarm", self.p["cloudwatch_alarm_month"],
                      "month", ["cloudwatch_alarm_month"],
                      f"{len(alarms)} alarm(s) + 2 per target-tracking policy ({len(tracking)}); free tier not applied")
        custom = set()
        for policy in self._of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values():
            spec = (policy.get("TargetTrackingScalingPolicyConfiguration") or {}).get("CustomizedMetricSpecification")
            if spec and not str(spec.get("Namespace", "")).startswith("AWS/"):
                dims = tuple(sorted((d.get("Name"), str(d.get("Value"))) for d in spec.get("Dimensions") or []))
                custom.add((spec.get("Namespace"), spec.get("MetricName"), dims))
        for alarm in self._of_type("AWS::CloudWatch::Alarm").values():   # an alarm on a metric the stack publishes
            if alarm.get("Namespace") and not str(alarm["Namespace"]).startswith("AWS/") and alarm.get("MetricName"):
                dims = tuple(sorted((d.get("Name"), str(d.get("Value"))) for d in alarm.get("Dimensions") or []))
                custom.add((alarm["Namespace"], alarm["MetricName"], dims))
        if custom:
            self._add("monitoring", "CloudWatch custom metrics", [], len(custom), "metric",
                      self.p["cloudwatch_custom_metric_month"], "month", ["cloudwatch_custom_metric_month"],
                      ", ".join(sorted(f"{n}/{m}{{{','.join(v for _, v in d)}}}" for n, m, d in custom)) + "; free tier not applied")
        self.assumptions.append("Lambda function logs (a few KB per invocation; the per-minute publisher ~90 MB/month, "
                                "about $0.05/month) are not priced")
        self.assumptions.append("Lambda, Step Functions, EventBridge Scheduler: inside the always-free tiers at no load "
                                f"[{self.prices['assumptions']['lambda_stepfunctions_scheduler']['why']}]")

    def dns(self) -> None:
        zones = sorted(self._of_type("AWS::Route53::HostedZone"))
        if zones:
            self._add("dns", "Route 53 hosted zone", zones, len(zones), "zone", self.p["route53_hosted_zone_month"], "month",
                      ["route53_hosted_zone_month"], "created by the stack")
            return
        declared = self.evaluator.template.get("Parameters") or {}
        zone_params = [k for k, v in declared.items() if v.get("Type") == "AWS::Route53::HostedZone::Id"]
        records = self._of_type("AWS::Route53::RecordSet", "AWS::Route53::RecordSetGroup")
        if zone_params or records:
            self._add("dns", "Route 53 hosted zone (existing, outside the stack)", zone_params, 1, "zone",
                      self.p["route53_hosted_zone_month"], "month", ["route53_hosted_zone_month"],
                      "the zone the stack's records live in; alias queries to CloudFront/ALB are free")


def estimate(template: dict[str, Any], profile: str | None = None, parameters: dict[str, str] | None = None,
             prices: dict[str, Any] | None = None, template_name: str = "template.yaml") -> CostReport:
    params = dict(parameters or {})
    declared = template.get("Parameters") or {}
    if profile is not None:
        if "Profile" not in declared:
            raise InvalidInput("the template has no Profile parameter: --profile cannot apply")
        params["Profile"] = profile
    return CostModel(template, params, prices or load_prices(), template_name).build()


def render_text(report: CostReport) -> str:
    lines = [f"tootstack cost: profile {report.profile}, {report.region}, prices dated {report.prices_date}, "
             f"template {report.template}", ""]
    width = max([len(i.name) for i in report.items] + [20])
    lines.append(f"{'item':<{width}}  {'quantity':>16}  {'unit price':>18}  {'$/month':>9}  {'$/day':>8}")
    for cat in dict.fromkeys(i.category for i in report.items):
        for i in (x for x in report.items if x.category == cat):
            qty = f"{i.quantity:g} {i.unit}"
            price = f"${i.unit_price:.6g}/{i.unit.split(' ')[0]}-{'h' if i.basis == 'hour' else 'mo'}"
            lines.append(f"{i.name:<{width}}  {qty:>16}  {price:>18}  {i.monthly:>9.2f}  {i.daily:>8.4f}")
            if i.detail:
                lines.append(f"{'':<{width}}    {i.detail}")
    lines.append("-" * (width + 60))
    lines.append(f"{'total':<{width}}  {'':>16}  {'':>18}  {report.monthly:>9.2f}  {report.daily:>8.4f}")
    lines.append(f"public IPv4 addresses: {report.public_ipv4}")
    target = report.target()
    if target:
        verdict = "MET" if target["met"] else "NOT MET"
        lines.append(f"target ({report.profile}): {target['relation']} ${target['usd_per_day']:.2f}/day -> {verdict} "
                     f"(margin ${target['margin_usd_per_day']:+.4f}/day)")
    if report.sidekiq_capacity:
        lines.append("")
        lines.append("Sidekiq capacity, $/day for one task of each service's size (Spot is X86_64 only):")
        for option in report.sidekiq_capacity:
            prices = ", ".join(f"{k} {v:.4f}" for k, v in option["usd_per_task_day"].items())
            lines.append(f"  {option['service']} ({option['vcpu']:g} vCPU / {option['gb']:g} GB, "
                         f"{option['tasks_at_no_load']} at no load): {prices} -> {option['chosen']}: {option['why']}")
    lines.append("")
    lines.append("assumptions:")
    lines.extend(f"  - {a}" for a in report.assumptions)
    if report.warnings:
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in report.warnings)
    return "\n".join(lines)

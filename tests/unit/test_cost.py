"""`tootstack cost`: figures checked against line items computed by hand from tests/data/cost_template.yaml."""

import json

import pytest

from tootstack_dev import cli
from tootstack_dev.cost.model import estimate, load_prices, split_capacity
from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
FIXTURE = ROOT / "tests/data/cost_template.yaml"
H = 730  # hours per month


@pytest.fixture(scope="module")
def template():
    return load_template(FIXTURE)


def _items(report):
    return {i.name: i for i in report.items}


def test_standard_profile_line_items_by_hand(template):
    report = estimate(template, "standard")
    items = _items(report)
    # Web: ARM64 0.5 vCPU + 2 GB; autoscaled 1-4 so 1 task at no load (not DesiredCount 2).
    web = items["Fargate WebService (ARM64 on-demand)"]
    assert web.quantity == 1
    assert web.daily == pytest.approx((0.5 * 0.03238 + 2 * 0.00356) * 24)          # 0.55944
    assert web.monthly == pytest.approx((0.5 * 0.03238 + 2 * 0.00356) * H)         # 17.0163
    # Sidekiq: 2 tasks, base 1 on FARGATE, the rest by weight on FARGATE_SPOT; X86_64 0.5 vCPU + 1 GB.
    assert items["Fargate SidekiqService (X86_64 on-demand)"].daily == pytest.approx((0.5 * 0.04048 + 0.004445) * 24)
    assert items["Fargate SidekiqService (X86_64 Spot)"].daily == pytest.approx((0.5 * 0.01334053 + 0.00146489) * 24)
    assert not any("SpareService" in name for name in items)  # DesiredCount 0 costs nothing
    assert items["ALB LoadBalancer"].daily == pytest.approx(0.54)
    assert items["ALB LoadBalancer capacity units (idle)"].daily == pytest.approx(0.05 * 0.008 * 24)
    # 1 web task with a public IP + 2 internet-facing ALB nodes (Sidekiq has none in standard).
    assert report.public_ipv4 == 3
    assert items["Public IPv4 addresses"].daily == pytest.approx(3 * 0.005 * 24)
    assert items["RDS Database db.t4g.small"].daily == pytest.approx(0.032 * 24)
    assert items["RDS Database storage (gp3)"].monthly == pytest.approx(40 * 0.115)
    assert items["ElastiCache Redis cache.t4g.small (redis)"].daily == pytest.approx(2 * 0.032 * 24)
    assert items["S3 MediaBucket (Standard)"].monthly == pytest.approx(0.023)
    assert items["CloudFront Distribution data out"].monthly == 0
    assert items["Secrets Manager secrets"].monthly == pytest.approx(2 * 0.40)
    # Logs: 3 running tasks x 20 MB/day, $0.50/GB in; held at $0.03/GB-month: web's group keeps 14 days,
    # Sidekiq logs to no group of the template (priced as 30 days held).
    assert items["CloudWatch Logs ingestion"].daily == pytest.approx(3 * 20 / 1024 * 0.5)
    assert items["CloudWatch Logs storage"].monthly == pytest.approx((1 * 14 + 2 * 30) * 20 / 1024 * 0.03)
    assert items["CloudWatch alarms"].monthly == pytest.approx(3 * 0.10)  # 1 alarm + 2 for one target-tracking policy
    assert items["Route 53 hosted zone (existing, outside the stack)"].monthly == pytest.approx(0.50)
    assert items["CloudWatch custom metrics"].monthly == pytest.approx(0.30)   # SidekiqQueueLatency{default}
    assert report.daily == pytest.approx(sum(i.monthly for i in report.items) * 24 / H)
    expected_daily = (
        (0.5 * 0.03238 + 2 * 0.00356) * 24 + (0.5 * 0.04048 + 0.004445) * 24 + (0.5 * 0.01334053 + 0.00146489) * 24
        + 0.54 + 0.05 * 0.008 * 24 + 3 * 0.005 * 24 + 0.032 * 24 + 40 * 0.115 * 24 / H + 2 * 0.032 * 24
        + 0.023 * 24 / H + 0.8 * 24 / H + 3 * 20 / 1024 * 0.5 + (1 * 14 + 2 * 30) * 20 / 1024 * 0.03 * 24 / H
        + 0.3 * 24 / H + 0.5 * 24 / H + 0.30 * 24 / H
    )
    assert report.daily == pytest.approx(expected_daily)
    assert report.target()["met"] is (expected_daily < 2.37)


def test_micro_profile_follows_conditions(template):
    report = estimate(template, "micro")
    items = _items(report)
    assert items["Fargate WebService (ARM64 on-demand)"].daily == pytest.approx((0.25 * 0.03238 + 1 * 0.00356) * 24)
    # Internal ALB: no node addresses; web 1 + Sidekiq 2 tasks now carry public IPs.
    assert report.public_ipv4 == 3
    assert "LoadBalancer: 2 node addresses" not in items["Public IPv4 addresses"].detail
    assert items["RDS Database db.t4g.micro"].daily == pytest.approx(0.384)
    assert items["RDS Database storage (gp3)"].monthly == pytest.approx(20 * 0.115)
    assert not any(name.startswith("ElastiCache Redis") for name in items)
    assert items["ElastiCache Serverless MicroCache (valkey) storage"].daily == pytest.approx(0.1 * 0.0837 * 24)
    assert items["ElastiCache Serverless MicroCache (valkey) requests"].daily == pytest.approx(1.5 * 0.0023)
    assert items["Secrets Manager secrets"].quantity == 1
    assert items["CloudWatch alarms"].quantity == 1
    assert report.profile == "micro" and report.target()["usd_per_day"] == 1.50


def test_every_assumption_is_stated(template):
    text = " ".join(estimate(template, "standard").assumptions)
    for needle in ("20 MB/day", "0.05 LCU", "1 GB", "730 h", "2026-11-26", "CloudFront serves 0 GB", "Spot"):
        assert needle in text


def test_every_price_has_a_source_and_a_date():
    prices = load_prices()
    assert prices["date"] and prices["region"] == "us-east-1"
    for key, entry in prices["prices"].items():
        assert entry["source"] and entry["checked"], key
    assert prices["prices"]["public_ipv4_hour"]["usd"] == 0.005


@pytest.mark.parametrize(
    ("count", "strategy", "expected"),
    [
        (3, [], {"FARGATE": 3}),
        (0, [], {}),
        (4, [{"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1}, {"CapacityProvider": "FARGATE_SPOT", "Weight": 2}],
         {"FARGATE": 2, "FARGATE_SPOT": 2}),
        (1, [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}], {"FARGATE_SPOT": 1}),
    ],
)
def test_capacity_split(count, strategy, expected):
    assert split_capacity(count, strategy) == expected


def test_spot_with_arm64_is_flagged(template):
    import copy

    broken = copy.deepcopy(template)
    broken["Resources"]["SidekiqTaskDefinition"]["Properties"]["RuntimePlatform"]["CpuArchitecture"] = "ARM64"
    assert any("Spot is X86_64 only" in w for w in estimate(broken, "standard").warnings)


def test_cli_text_and_json(capsys):
    assert cli.main(["cost", "--template", str(FIXTURE), "--profile", "micro"]) == 0
    out = capsys.readouterr().out
    assert "profile micro" in out and "assumptions:" in out and "Fargate WebService" in out and "target (micro)" in out
    assert cli.main(["cost", "--template", str(FIXTURE), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "standard"
    assert data["total_daily"] == pytest.approx(sum(i["daily"] for i in data["items"]), abs=1e-3)
    assert {"monthly", "daily", "price_ids", "quantity", "unit_price"} <= set(data["items"][0])


@pytest.mark.parametrize(
    "argv",
    [
        ["cost", "--template", "/nonexistent/template.yaml"],
        ["cost", "--template", str(FIXTURE), "-p", "NoSuchParameter=1"],
        ["cost", "--template", str(FIXTURE), "-p", "Profile=micro"],
        ["cost", "--template", str(FIXTURE), "-p", "garbage"],
    ],
)
def test_bad_input_exits_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_unknown_profile_is_rejected_by_argparse():
    with pytest.raises(SystemExit) as exc:
        cli.main(["cost", "--profile", "huge"])
    assert exc.value.code == 2


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_project_template_prices_without_errors(profile):
    report = estimate(load_template(ROOT / "template.yaml"), profile)
    assert report.daily >= 0
    assert all(i.monthly >= 0 for i in report.items)


def test_project_template_meets_the_standard_target_with_one_core_task():
    """The shipped template at no load: one 0.5 vCPU ARM64 core task (3 GB standard, 2 GB micro) with
    the only public IPv4 address, an internal ALB (CloudFront VPC origin), RDS and one Valkey node."""
    template = load_template(ROOT / "template.yaml")
    for profile, gb in (("standard", 3), ("micro", 2)):
        report = estimate(template, profile)
        items = _items(report)
        fargate = [name for name in items if name.startswith("Fargate")]
        assert fargate == ["Fargate CoreService (ARM64 on-demand)"], profile
        assert items[fargate[0]].daily == pytest.approx((0.5 * 0.03238 + gb * 0.00356) * 24), profile
        assert report.public_ipv4 == 1 and items["Public IPv4 addresses"].daily == pytest.approx(0.005 * 24)
        assert items["ElastiCache Redis cache.t4g.micro (valkey)"].daily == pytest.approx(0.016 * 0.8 * 24)
    standard = estimate(template, "standard")
    assert standard.daily < 2.37 and standard.target()["met"] is True


def test_micro_floor_without_any_task_is_already_near_the_target():
    """Why micro misses $1.50/day (docs/day2.md): what no task size changes already costs about that."""
    items = _items(estimate(load_template(ROOT / "template.yaml"), "micro"))
    fixed = ("ALB LoadBalancer", "ALB LoadBalancer capacity units (idle)", "Public IPv4 addresses",
             "RDS Database db.t4g.micro", "RDS Database storage (gp3)", "ElastiCache Redis cache.t4g.micro (valkey)",
             "Route 53 hosted zone (existing, outside the stack)", "ECR image storage")
    floor = sum(items[name].daily for name in fixed)
    by_hand = 0.0225 * 24 + 0.05 * 0.008 * 24 + 0.005 * 24 + 0.016 * 24 + 20 * 0.115 * 24 / H + 0.0128 * 24 + 0.5 * 24 / H + 3 * 0.1 * 24 / H
    assert floor == pytest.approx(by_hand)                       # 1.4627
    smallest_task = (0.5 * 0.03238 + 1 * 0.00356) * 24           # 0.474: 0.5 vCPU / 1 GB ARM64
    assert floor + smallest_task > 1.50


def test_sidekiq_capacity_compares_spot_x86_with_arm64_on_demand_per_service():
    """Spot has no ARM64: each Sidekiq service is priced per task both ways (and X86_64 on-demand), and the
    report says which the template picked and why; the scheduler's service is never the Spot one."""
    report = estimate(load_template(ROOT / "template.yaml"), "standard")
    options = {o["service"]: o for o in report.sidekiq_capacity}
    assert set(options) == {"CoreService", "SidekiqDefaultService", "SidekiqPullService", "SidekiqPullOnDemandService"}
    pull = options["SidekiqPullService"]
    assert pull["usd_per_task_day"] == {
        "ARM64 on-demand": pytest.approx((0.5 * 0.03238 + 1 * 0.00356) * 24, abs=1e-4),
        "X86_64 on-demand": pytest.approx((0.5 * 0.04048 + 1 * 0.004445) * 24, abs=1e-4),
        "X86_64 Spot": pytest.approx((0.5 * 0.01334053 + 1 * 0.00146489) * 24, abs=1e-4),
    }
    assert pull["chosen"] == "X86_64 Spot" and min(pull["usd_per_task_day"], key=pull["usd_per_task_day"].get) == "X86_64 Spot"
    core = options["CoreService"]
    assert "scheduler" in core["queues"] and core["chosen"] == "ARM64 on-demand" and "never Spot" in core["why"]
    assert options["SidekiqDefaultService"]["chosen"] == "ARM64 on-demand"
    assert "fallback twin" in options["SidekiqPullOnDemandService"]["why"]
    micro = {o["service"] for o in estimate(load_template(ROOT / "template.yaml"), "micro").sidekiq_capacity}
    assert "SidekiqPullOnDemandService" not in micro      # no fallback controller in micro


def test_cli_json_carries_the_sidekiq_capacity_comparison(capsys):
    assert cli.main(["cost", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {o["service"] for o in data["sidekiq_capacity"]} >= {"CoreService", "SidekiqPullService"}


def test_project_template_alarms_include_the_safety_net_by_hand():
    """Alarms of the shipped template at steady state, counted by hand. Standard: 8 day-2 alarms (bandwidth,
    maintenance failed, maintenance skipped, web low/high requests, core CPU, two Sidekiq backlogs) + 10 safety-net alarms (database free
    storage, CPU credits, connections; Valkey memory; web, streaming and ALB 5xx; web and streaming unhealthy
    targets; core down) + 2 per target-tracking policy (web requests, web CPU, two Sidekiq latencies).
    Micro: no Sidekiq scaling (no backlog alarms, two tracking policies)."""
    template = load_template(ROOT / "template.yaml")
    standard = _items(estimate(template, "standard"))["CloudWatch alarms"]
    assert standard.quantity == 8 + 10 + 2 * 4
    assert standard.monthly == pytest.approx(26 * 0.10) and standard.daily == pytest.approx(26 * 0.10 * 24 / H)   # 0.0855
    micro = _items(estimate(template, "micro"))["CloudWatch alarms"]
    assert micro.quantity == 6 + 10 + 2 * 2
    assert micro.monthly == pytest.approx(20 * 0.10)
    # the safety net costs $1.00/month on each profile and standard stays below its target
    assert estimate(template, "standard").daily < 2.37


def test_template_evaluator_resolves_the_roles_sam_generates():
    """With registry credentials configured, policies attach to MirrorFunctionRole/UpgradeFunctionRole, which
    SAM generates (`<Function>Role`, sam-specification-generated-resources-function.html): the evaluator
    (cost, the rehearsal's scalable targets) must resolve them instead of failing on an undefined name."""
    from tootstack_dev.cost.template_eval import TemplateEvaluator
    from tootstack_dev.local.template import load_template, project_root

    template = load_template(project_root() / "template.yaml")
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:registry-AbCdEf"
    resources = TemplateEvaluator(template, {"MirrorSourceCredentialsSecretArn": arn, "DomainName": "a.test"}).resources()
    assert resources["MirrorSourceCredentialsPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] == arn

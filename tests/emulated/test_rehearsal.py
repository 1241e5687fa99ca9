"""The rehearsal end to end: the real template deployed into moto with real stand-ins, via the CLI."""

import json
import subprocess
import sys

import pytest

from tootstack_dev import cli
from tootstack_dev.local.template import load_template, project_root
from tootstack_dev.rehearsal import runner

ROOT = project_root()


@pytest.fixture(scope="module")
def full_rehearsal(tmp_path_factory):
    """One real `tootstack rehearse --report` run (a subprocess, as an operator runs it)."""
    report_path = tmp_path_factory.mktemp("rehearsal") / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tootstack_dev.cli", "rehearse", "--report", str(report_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return proc, report


@pytest.mark.xdist_group("rehearsal")
def test_rehearsal_passes_and_reports_every_stage(full_rehearsal):
    proc, report = full_rehearsal
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report is not None and report["ok"] is True
    names = [s["name"] for s in report["stages"]]
    assert names[:2] == ["stand-ins", "deploy"]
    assert all(set(s) >= {"name", "status", "seconds", "detail"} for s in report["stages"])
    assert all(s["status"] == "ok" for s in report["stages"])
    assert "Rehearsal OK" in proc.stdout
    # the operator's year after the upgrade: every seam between the workflows held
    redeploy = next(s for s in report["stages"] if s["name"] == "redeploy")["detail"]
    for needle in ("sam deploy (same template and parameters): no changes", "one-off rails db:migrate:status: ran the upgraded toolbox",
                   "refused by VersionGuard, nothing changed; it names: MastodonImage=", "core restart bridged by a web task",
                   "maintenance: ran (not skipped)", f"recorded version stayed {_default_release()}"):
        assert needle in redeploy, (needle, redeploy)


def _default_release() -> str:
    """The release the upgrade stage moves to: the template's MastodonImage default."""
    from tootstack_dev.local.template import load_template, project_root
    from tootstack.upgrade.version import version_of_image

    return version_of_image(load_template(project_root() / "template.yaml")["Parameters"]["MastodonImage"]["Default"])


@pytest.mark.xdist_group("rehearsal")
def test_rehearsal_accounts_for_every_template_resource(full_rehearsal):
    """Each resource of the transformed template is either created in moto or reported as stood in for."""
    _, report = full_rehearsal
    created = {r["logical_id"] for r in report["resources"]}
    skipped = {s["logical_id"] for s in report["skipped_resources"]}
    assert not created & skipped
    sam = load_template(ROOT / "template.yaml")
    # Every SAM resource that is not itself transformed keeps its logical id.
    plain = {lid for lid, r in sam["Resources"].items() if not r["Type"].startswith("AWS::Serverless::")}
    conditional = {lid for lid, r in sam["Resources"].items() if "Condition" in r}
    assert plain - conditional <= created | skipped
    redis = [s for s in report["skipped_resources"] if s["type"] == "AWS::ElastiCache::ReplicationGroup"]
    assert redis and all("redis-server" in s["stand_in"] for s in redis)


@pytest.mark.xdist_group("rehearsal")
def test_rehearsal_reports_which_mastodon_paths_the_edge_caches(full_rehearsal):
    """The edge-cache stage evaluates the translated template's distribution (UseCloudFront=true in
    samconfig.toml [rehearsal]): static files and media cached, pages/API/streaming/federation not."""
    _, report = full_rehearsal
    paths = {r["path"]: r for r in report["edge_cache"]}
    assert paths["/packs/assets/application-DR4MmDT5.js"]["cached"] and paths["/sounds/boop.ogg"]["cached"]
    assert paths["/emoji/1f418.svg"]["cached"] and paths["/assets/logo-symbol-wordmark-1f4c3b2a.svg"]["cached"]
    assert not paths["/api/v1/timelines/home?limit=20"]["cached"] and not paths["/inbox"]["cached"]
    assert all(r["host_forwarded"] for r in paths.values() if r["origin"] == "alb")
    stage = next(s for s in report["stages"] if s["name"] == "edge-cache")
    assert stage["detail"].startswith("10 of 28 Mastodon request paths cached at the edge")


def test_failed_stage_fails_the_rehearsal(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runner, "STAGE_MODULES", ["tootstack_dev.rehearsal.deploy", "tests.data.failing_stage"])
    report_path = tmp_path / "r.json"
    code = cli.main(["rehearse", "--quiet", "--report", str(report_path), "--root", str(ROOT)])
    assert code == 1
    report = json.loads(report_path.read_text())
    statuses = {s["name"]: (s["status"], s["detail"]) for s in report["stages"]}
    assert statuses["deploy"][0] == "ok"
    assert statuses["always-fails"] == ("failed", "RuntimeError: this stage fails on purpose")
    assert "Rehearsal FAILED" in capsys.readouterr().out


def test_bad_parameter_is_a_usage_error(capsys):
    assert cli.main(["rehearse", "-p", "no-equals-sign"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.xdist_group("rehearsal-micro")
def test_micro_profile_without_cloudfront_rehearses_cleanly():
    """The cheapest profile, ALB only: every stage ok, nothing but the report on stdout, no log noise."""
    proc = subprocess.run(
        [sys.executable, "-m", "tootstack_dev.cli", "rehearse", "--quiet", "-p", "Profile=micro", "-p", "UseCloudFront=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Rehearsal OK" in proc.stdout
    # only the core task (web + streaming + the scheduler-holding Sidekiq) starts; burst services wait at 0
    assert "services scaled from 0: core=1, web=0, sidekiq-default=0, sidekiq-pull=0" in proc.stdout
    # stand-ins are reported only for resources these parameters deploy (CloudFront is off here)
    assert "Distribution (AWS::CloudFront::Distribution)" not in proc.stdout and "AlbVpcOrigin" not in proc.stdout
    assert "(moto listed no type" in proc.stdout
    assert proc.stderr == ""
    assert '"level":"INFO"' not in proc.stdout


@pytest.mark.xdist_group("rehearsal-launched")
def test_micro_with_a_samconfig_from_before_rehearses_the_year():
    """Profile=micro (CloudFront on), and a samconfig.toml that still passes the former launch flag: it is
    ignored, first boot starts the core, the Redis rotation redeploys the running services, the upgrade
    and the later sam deploy bridge the core's stop-first restart, and the redeploy year is ok."""
    proc = subprocess.run(
        [sys.executable, "-m", "tootstack_dev.cli", "rehearse", "--quiet", "-p", "Profile=micro", "-p", "ServicesLaunched=true"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "old one refused" in proc.stdout
    assert "1 ECS scalable targets registered" in proc.stdout    # micro scales only web; moto's CloudFormation skips it
    assert "core restart bridged by a web task on the new version, web minimum back to 0" in proc.stdout
    assert "refused by VersionGuard, nothing changed" in proc.stdout and "core restart bridged by a web task, web minimum given back" in proc.stdout


@pytest.mark.xdist_group("rehearsal")
def test_every_rehearsed_aws_call_is_allowed_and_every_unused_statement_justified(full_rehearsal):
    """The least-privilege stage: each AWS call a function, state machine or task execution role made is
    allowed by that role's deployed policies; a statement no call used carries its reason in template.yaml."""
    _, report = full_rehearsal
    iam = report["iam"]
    assert iam["unallowed"] == []
    assert len(iam["distinct_calls"]) >= 100
    roles = {c["role"] for c in iam["distinct_calls"]}
    assert {"FirstBootStateMachineRole", "CreateAdminStateMachineRole", "MaintenanceStateMachineRole", "UpgradeStateMachineRole",
            "TaskExecutionRole", "AdminTaskExecutionRole", "MirrorFunctionRole", "UpgradeFunctionRole", "CreateAdminFunctionRole",
            "RedisRotationFunctionRole", "SecretsBootstrapFunctionRole", "CrashloopDetectorFunctionRole"} <= roles
    assert [u["statement"] for u in iam["unused_statements"] if not u["justification"]] == []
    assert iam["stale_justifications"] == []   # a statement justified as unused that a call did use
    assert "RunOneOffFunctionRole" in roles and "RunOneOffStateMachineRole" in roles


@pytest.mark.xdist_group("rehearsal")
def test_the_redeploy_answers_custom_resources_through_their_functions(full_rehearsal):
    """The redeploy stage's `sam deploy` sends each custom resource CloudFormation's request through the deployed
    function its ServiceToken names, as CloudFormation does: what only the handlers' entries call shows in
    their roles' calls. DeployGuardFunction asks CloudFormation whether the stack rolls back before guarding
    the version (functions/deploy_guard/app.py); MirrorFunction logs in to the registry ECR names
    (functions/mirror/app.py), where running the mirror library in the stage's place would not."""
    _, report = full_rehearsal
    calls = {(c["role"], c["action"]) for c in report["iam"]["distinct_calls"]}
    assert ("DeployGuardFunctionRole", "cloudformation:DescribeStacks") in calls
    assert ("DeployGuardFunctionRole", "ssm:PutParameter") in calls         # CoreBridge's record
    assert ("DeployGuardFunctionRole", "ssm:DeleteParameter") in calls      # CoreBridgeRelease
    assert ("MirrorFunctionRole", "ecr:GetAuthorizationToken") in calls

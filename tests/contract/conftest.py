"""The contract tier: every container definition of the stack, as ECS registers it, run against real servers
with the client libraries Mastodon uses.

The container definitions come from the stack itself: template.yaml is translated offline (the SAM transform)
and created in moto's CloudFormation by the rehearsal's own deploy step, and each task definition is read back
from moto's ECS (environment, secret names, entry point, command; nothing hand-written). The secrets are filled
with the values the rehearsal generated for the stack's secrets, plus generated values for keys first boot
would add. What a test replaces is only what cannot exist here: the database and Redis endpoints (a real
PostgreSQL and redis-server), the RDS CA (the private CA that signed the test server's certificate) and the
image's command (a probe exec'd by the entry point in its place).
"""

from __future__ import annotations

import json
import os
import secrets as random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.postgres import PostgresServer
from tootstack_dev.local.redis import RedisServer
from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
NODE_DIR = ROOT / "tests" / "contract" / "node"
RUBY_PROBE = ROOT / "tests" / "contract" / "probe.rb"
REGION = "us-east-1"


@dataclass
class Container:
    logical_id: str                 # the task definition's logical id in template.yaml
    family: str
    name: str
    image: str
    environment: dict[str, str]
    secrets: dict[str, str]         # name -> valueFrom (secret ARN:json-key::)
    entry_point: list[str]
    command: list[str]
    secret_values: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> str:
        """Which Mastodon image runs it: the streaming image (node) or the Rails image (ruby)."""
        return "node" if "node" in self.command[:1] or "streaming" in self.image else "ruby"

    def label(self) -> str:
        return f"{self.logical_id}/{self.name}"


@dataclass
class Stack:
    containers: list[Container]
    declared: set[tuple[str, str]]  # (task definition logical id, container name) in the translated template
    buckets: dict[str, dict]        # logical id -> translated properties of every S3 bucket
    composed: dict[str, dict]       # instance of a nested template -> {Location, Resources} (load_template)


def _deploy() -> Stack:
    import boto3
    from moto import mock_aws

    from tootstack_dev.rehearsal.context import RehearsalContext
    from tootstack_dev.rehearsal.deploy import create_stack

    with mock_aws():
        ctx = RehearsalContext(root=ROOT, stack_name="tootstack", region=REGION, parameters={}, progress=lambda line: None)
        ctx.sam_template = load_template(ROOT / "template.yaml")
        create_stack(ctx)
        translated = ctx.cfn_template["Resources"]
        cfn = boto3.client("cloudformation", region_name=REGION)
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for r in cfn.list_stack_resources(StackName="tootstack")["StackResourceSummaries"]}
        ecs = boto3.client("ecs", region_name=REGION)
        secretsmanager = boto3.client("secretsmanager", region_name=REGION)
        stored: dict[str, dict] = {}
        containers: list[Container] = []
        declared: set[tuple[str, str]] = set()
        for logical_id, resource in translated.items():
            if resource["Type"] != "AWS::ECS::TaskDefinition":
                continue
            for definition in resource["Properties"]["ContainerDefinitions"]:
                declared.add((logical_id, definition["Name"]))
            task = ecs.describe_task_definition(taskDefinition=physical[logical_id])["taskDefinition"]
            for c in task["containerDefinitions"]:
                values = {}
                for s in c.get("secrets", []):
                    arn, key = s["valueFrom"].rsplit(":", 3)[0], s["valueFrom"].rsplit(":", 3)[1]
                    if arn not in stored:
                        stored[arn] = json.loads(secretsmanager.get_secret_value(SecretId=arn)["SecretString"])
                    # keys first boot adds (SECRET_KEY_BASE...) are generated here as it would
                    values[s["name"]] = str(stored[arn].get(key) or random.token_hex(32))
                containers.append(Container(
                    logical_id=logical_id, family=task["family"], name=c["name"], image=c["image"],
                    environment={e["name"]: str(e["value"]) for e in c.get("environment", [])},
                    secrets={s["name"]: s["valueFrom"] for s in c.get("secrets", [])},
                    entry_point=list(c.get("entryPoint", [])), command=list(c.get("command", [])),
                    secret_values=values))
        buckets = {lid: r.get("Properties", {}) for lid, r in translated.items() if r["Type"] == "AWS::S3::Bucket"}
        composed = ctx.sam_template.get("Metadata", {}).get("tootstack:composed", {})
    return Stack(containers, declared, buckets, composed)


@pytest.fixture(scope="session")
def stack() -> Stack:
    return _deploy()


@pytest.fixture(scope="session")
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def database(stack, postgres):
    """The stack's database and master user on the test server (one for all containers, as RDS)."""
    names = {(c.environment["DB_NAME"], c.environment["DB_USER"], c.secret_values["DB_PASS"]) for c in stack.containers}
    assert len(names) == 1, "every container must use the same database, user and password"
    postgres.add_database(*names.pop())
    return postgres


@pytest.fixture(scope="session")
def redis_tls_server():
    with RedisServer(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """tests/contract/node with its node_modules (`make setup` runs `npm ci` on the committed lockfile)."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "pg").is_dir():
        pytest.fail("node clients missing: run `make setup` (npm ci --prefix tests/contract/node)")
    return NODE_DIR


def run_container(container: Container, environment: dict[str, str], probe_input: dict, *,
                  entry_point: list[str] | None = None, extra_env: dict[str, str] | None = None) -> dict:
    """Start `container` as ECS would (its entry point, by a real /bin/sh, with its environment and secrets),
    with the image's command replaced by the probe of its runtime; return the probe's JSON answer.

    `environment` is the container's environment with the test's replacements; `extra_env` holds what the
    image provides outside the task definition (PATH, the trust store)."""
    workdir = Path(tempfile.mkdtemp(prefix="tootstack-contract-"))
    try:
        (workdir / "input.json").write_text(json.dumps(probe_input))
        if container.runtime == "node":
            command = ["node", str(NODE_DIR / "probe.mjs"), str(workdir / "input.json")]
        else:
            command = ["ruby", str(RUBY_PROBE), str(workdir / "input.json")]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(workdir), "HOME": str(workdir)}
        env.update(extra_env or {})
        env.update(environment)
        done = subprocess.run([*(entry_point or container.entry_point), *command], env=env, cwd=workdir,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not done.stdout.startswith("{"):
            # never echo the output: it could hold what the probe read from the environment
            raise AssertionError(f"{container.label()}: probe exited {done.returncode} "
                                 f"({len(done.stdout)} bytes out, {len(done.stderr)} bytes err)")
        return json.loads(done.stdout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

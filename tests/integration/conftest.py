"""The integration tier: read-only checks of a real deployed stack, named by TOOTSTACK_STACK_NAME (as
serverless-test-samples' integration tests find theirs by AWS_SAM_STACK_NAME).

Opt-in: without TOOTSTACK_STACK_NAME every test here is skipped with that reason (the only skip in the suite;
`make test` does not run this tier). With it, the tests use the AWS credentials the shell had before
tests/conftest.py replaced them with fake ones (environment keys, AWS_PROFILE, or botocore's other providers),
the region of TOOTSTACK_REGION / AWS_REGION / AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL if set (botocore's own
setting, which points every client at one endpoint, e.g. a moto server).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import CALLER_AWS_ENV

STACK_ENV = "TOOTSTACK_STACK_NAME"
HERE = Path(__file__).parent
SKIP_REASON = (f"opt-in tier: set {STACK_ENV} to the name of a deployed tootstack stack (and AWS credentials) "
               "to run it: TOOTSTACK_STACK_NAME=<stack> make integration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(item.path).parents]
    for item in mine:
        item.add_marker(pytest.mark.integration)
        if not os.environ.get(STACK_ENV):
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


def caller_session() -> boto3.Session:
    """A boto3 session with the caller's credentials, never the fake ones the other tiers use."""
    env = CALLER_AWS_ENV
    region = os.environ.get("TOOTSTACK_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if "AWS_ACCESS_KEY_ID" in env:
        return boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                             aws_session_token=env.get("AWS_SESSION_TOKEN"), region_name=region)
    if "AWS_PROFILE" in env:
        return boto3.Session(profile_name=env["AWS_PROFILE"], region_name=region)
    session = boto3.Session(region_name=region)
    # botocore's credential chain without the environment provider, which now holds the fake keys
    session._session.get_component("credential_provider").remove("env")
    return session


@pytest.fixture(scope="session")
def stack_name() -> str:
    return os.environ[STACK_ENV]


@pytest.fixture(scope="session")
def aws() -> boto3.Session:
    return caller_session()


@pytest.fixture(scope="session")
def stack(aws: boto3.Session, stack_name: str) -> dict[str, Any]:
    """The stack as DescribeStacks returns it, with `outputs` and `parameters` as dicts."""
    found = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    found["outputs"] = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    found["parameters"] = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue")) for p in found.get("Parameters", [])}
    return found

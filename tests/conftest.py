"""Shared pytest fixtures. Fixture modules live in tests/fixtures/ and are registered here."""

import os

# Never let a test reach real AWS: fake credentials and a fixed region for every boto3 client.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "tootstack")

pytest_plugins = [
    # each capability adds its fixture module here
    "tests.fixtures.redis",
    "tests.fixtures.aws",
    "tests.fixtures.registry",
    "tests.fixtures.oneoff",
    "tests.fixtures.cfn",
]

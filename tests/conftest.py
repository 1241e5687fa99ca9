"""Settings every tier shares. Fixtures live in tests/fixtures/ and each tier's conftest.py takes the ones it
may use: tests/unit nothing that starts a process or imports moto, tests/emulated the real servers and moto.

Never let a test reach real AWS: fake credentials and a fixed region for every boto3 client. The one exception
is the opt-in integration tier (tests/integration), which reads a real stack with the credentials the shell
had; they are kept here, before they are replaced, and only that tier uses them (with its own boto3 session).
"""

import os

_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
             "AWS_REGION")
# the caller's AWS environment, for tests/integration only
CALLER_AWS_ENV = {key: os.environ[key] for key in _AWS_KEYS if key in os.environ}

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "tootstack")

# pytester: the unit tier's guard is shown to catch violations by running a violating test in a fresh pytest
pytest_plugins = ["pytester"]

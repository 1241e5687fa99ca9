"""Errors every capability raises for bad input or unreachable dependencies.

The CLI turns a TootstackError into a one-line message and exit code 2 (usage/input) or 1 (runtime),
never a traceback; Lambda handlers let it propagate so Step Functions shows the error type by name.
Messages must never contain secret values.
"""


class TootstackError(Exception):
    """Base class: a failure with a clear, operator-facing message."""

    exit_code = 1


class InvalidInput(TootstackError):
    """Malformed event, argument or file: nothing was changed."""

    exit_code = 2


def aws_error_code(exc: Exception, default: str = "") -> str:
    """The AWS error code of a botocore ClientError (e.g. "ResourceNotFoundException"), else `default`."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", default)


class DependencyUnavailable(TootstackError):
    """A registry, Redis, AWS API or local tool could not be reached or used."""

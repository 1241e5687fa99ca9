"""The create-admin request: validation, the password secret, the pending secret, the result.

Flow (statemachines/create_admin.asl.json, Lambda functions/create_admin):

1. `prepare`: validate the console input (nothing is touched when it is invalid), then make sure the
   per-user secret `<stack>/admin/<username>` holds a password (generated here, never returned), and
   copy it with the username and the execution's name into the fixed secret `<stack>/admin/pending`.
   The admin task definition reads that secret through ECS `secrets` (RunTask overrides cannot set
   `secrets`, and a task definition must name its secrets in advance, so one fixed secret is written
   before each run). Returns only names and ARNs.
2. The state machine runs the admin task (`bin/rails runner` with create_admin.rb); the script checks
   that the pending secret belongs to its request (the execution name passed as ADMIN_REQUEST) so two
   concurrent executions can never give one user the other's password.
3. `finish`: reset the pending secret to a placeholder (only if it still holds this request), and build
   the output: username, role, what happened, the secret's ARN and the CLI command that reads it.

No function here logs, returns or raises with a password in it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError, field_validator

from tootstack.errors import InvalidInput, TootstackError, aws_error_code
from tootstack.secrets.generate import alphanumeric

ROLES = ("Owner", "Admin", "Moderator")
USERNAME_MAX = 30                    # Mastodon: local usernames are at most 30 characters
USERNAME_RE = re.compile(r"[A-Za-z0-9_]+")  # Mastodon: /\A[a-z0-9_]+\z/i for local accounts
EMAIL_MAX = 254
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + r")+")
PASSWORD_LENGTH = 32                 # bcrypt uses at most 72 bytes; Mastodon needs at least 8

# Exit codes of create_admin.rb (the state machine's Choice state maps them; keep both in sync).
EXIT_CREATED = 0          # account created with the password from the secret
EXIT_EXISTING = 10        # account existed: role, confirmation and approval ensured, password unchanged
EXIT_RESET = 11           # account existed: same as above and the password was reset from the secret
EXIT_BAD_INPUT = 2        # the script refused its input (or Mastodon's validations refused the account)
EXIT_OTHER_REQUEST = 3    # the pending secret belongs to another execution (concurrent runs): nothing changed

PENDING_PLACEHOLDER = {"username": "", "password": "", "request": ""}


class AdminRequest(BaseModel):
    """The console input of the create-admin state machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: StrictStr
    email: StrictStr
    role: Literal["Owner", "Admin", "Moderator"]
    reset_password: StrictBool = False

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if len(value) > USERNAME_MAX:
            raise ValueError(f"must be at most {USERNAME_MAX} characters (Mastodon's limit for local accounts)")
        if not USERNAME_RE.fullmatch(value):
            raise ValueError("may contain only letters a-z, digits and underscores (Mastodon username rules)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if len(value) > EMAIL_MAX or not EMAIL_RE.fullmatch(value):
            raise ValueError("must look like name@example.org (ASCII, one @, a dotted domain)")
        return value

    @property
    def secret_key(self) -> str:
        """Mastodon usernames are case-insensitive: one secret per lower-cased username."""
        return self.username.lower()


def validate_admin_request(data: Any) -> AdminRequest:
    """Parse the console input; raise InvalidInput naming every problem (values are not echoed)."""
    if not isinstance(data, dict):
        raise InvalidInput('create-admin input must be a JSON object like {"username": "alice", '
                           '"email": "alice@example.org", "role": "Owner"}')
    from aws_lambda_powertools.utilities.parser import parse   # where it is used: not at the handler's cold import

    try:
        return parse(event=data, model=AdminRequest)
    except ValidationError as exc:
        raise InvalidInput(f"invalid create-admin input: {describe_errors(exc)}") from None
    except Exception as exc:  # powertools wraps some failures in its own exception types
        cause = exc.__cause__ if isinstance(exc.__cause__, ValidationError) else None
        if cause is not None:
            raise InvalidInput(f"invalid create-admin input: {describe_errors(cause)}") from None
        raise InvalidInput(f"invalid create-admin input: {type(exc).__name__}") from None


def describe_errors(exc: ValidationError) -> str:
    """One clause per field, without the offending values (they could be anything)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in error.get("loc", ())) or "input"
        kind = error.get("type", "")
        if kind == "missing":
            msg = "is required"
        elif kind == "extra_forbidden":
            msg = "is not an accepted field (accepted: username, email, role, reset_password)"
        elif kind == "literal_error":
            msg = f"must be one of {', '.join(ROLES)}"
        elif kind in ("string_type", "bool_type"):
            msg = "must be a string" if kind == "string_type" else "must be true or false"
        else:
            msg = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{field} {msg}")
    return "; ".join(parts)


def user_secret_name(stack_name: str, username: str) -> str:
    return f"{stack_name}/admin/{username.lower()}"


def pending_secret_name(stack_name: str) -> str:
    return f"{stack_name}/admin/pending"


def read_password_command(secret_arn: str) -> str:
    return f"aws secretsmanager get-secret-value --secret-id {secret_arn} --query SecretString --output text"


def generate_password() -> str:
    return alphanumeric(PASSWORD_LENGTH)


def _token(request: str, purpose: str) -> str:
    """A Secrets Manager ClientRequestToken that is the same on a retry of the same execution."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tootstack:{purpose}:{request}"))


def ensure_user_secret(sm: Any, stack_name: str, request: AdminRequest, request_id: str) -> tuple[str, str, bool]:
    """Return (secret ARN, password, created). Idempotent for a retry of the same request id."""
    name = user_secret_name(stack_name, request.username)
    try:
        described = sm.describe_secret(SecretId=name)
    except Exception as exc:  # botocore ClientError
        if aws_error_code(exc) != "ResourceNotFoundException":
            raise
        described = None
    if described is not None and described.get("DeletedDate"):
        raise TootstackError(
            f"secret {name} is scheduled for deletion: restore it (aws secretsmanager restore-secret "
            f"--secret-id {name}) or delete it for good, then run again"
        )
    if described is None:
        password = generate_password()
        try:
            created = sm.create_secret(
                Name=name,
                Description=f"Mastodon password of @{request.username} (tootstack create-admin)",
                SecretString=password,
                ClientRequestToken=_token(request_id, "create"),
                Tags=[{"Key": "tootstack:stack", "Value": stack_name}, {"Key": "tootstack:purpose", "Value": "admin-password"}],
            )
            return created["ARN"], password, True
        except Exception as exc:
            if aws_error_code(exc) != "ResourceExistsException":
                raise
            described = sm.describe_secret(SecretId=name)  # created meanwhile (a retry): use it
    arn = described["ARN"]
    if request.reset_password:
        token = _token(request_id, "reset")
        versions = described.get("VersionIdsToStages", {})
        if token in versions:  # a retry of this execution: keep the password it already set
            return arn, sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"], False
        password = generate_password()
        sm.put_secret_value(SecretId=arn, SecretString=password, ClientRequestToken=token)
        return arn, password, False
    return arn, sm.get_secret_value(SecretId=arn)["SecretString"], False


def prepare(sm: Any, stack_name: str, pending_secret_id: str, data: Any, request_id: str, script: str,
            task_timeout_seconds: int = 900) -> dict[str, Any]:
    """Validate, store the password, stage it for the admin task; return what the state machine needs."""
    request = validate_admin_request(data)
    if not request_id:
        raise InvalidInput("prepare needs the execution name as 'request'")
    arn, password, created = ensure_user_secret(sm, stack_name, request, request_id)
    sm.put_secret_value(
        SecretId=pending_secret_id,
        SecretString=json.dumps({"username": request.username, "password": password, "request": request_id}),
    )
    del password
    return {
        "username": request.username,
        "email": request.email,
        "role": request.role,
        "reset_password": "true" if request.reset_password else "false",
        "request": request_id,
        "secret_arn": arn,
        "secret_created": created,
        "command": ["bin/rails", "runner", script],
        "task_timeout_seconds": task_timeout_seconds,
    }


def clear_pending(sm: Any, pending_secret_id: str, request_id: str) -> bool:
    """Put the placeholder back into the pending secret if it still holds this request's password."""
    try:
        current = json.loads(sm.get_secret_value(SecretId=pending_secret_id)["SecretString"])
    except (ValueError, TypeError):
        current = {}
    if current.get("request") != request_id:
        return False
    sm.put_secret_value(SecretId=pending_secret_id, SecretString=json.dumps(PENDING_PLACEHOLDER))
    return True


def finish(sm: Any, pending_secret_id: str, prepared: dict[str, Any], outcome: str, task_summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Clear the pending secret and build the execution's result for `outcome`
    ("created", "existing", "password_reset" or "failed")."""
    cleared = clear_pending(sm, pending_secret_id, prepared["request"])
    username, arn = prepared["username"], prepared["secret_arn"]
    result: dict[str, Any] = {
        "username": username,
        "role": prepared["role"],
        "status": outcome,
        "pending_secret_cleared": cleared,
    }
    if task_summary:
        result["task"] = task_summary
    if outcome == "failed":
        result["message"] = failure_message(username, task_summary)
        return result
    if outcome == "existing" and prepared.get("secret_created"):
        # The account existed before tootstack stored a password for it, and its password was not
        # changed: the secret just created does not hold its password, so it must not be offered.
        try:
            sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        except Exception as exc:  # a retry of this step: already deleted
            if aws_error_code(exc) != "ResourceNotFoundException":
                raise
        result["message"] = (
            f"@{username} already existed; role, confirmation and approval ensured; its password was not "
            'changed. Run again with "reset_password": true to set a new one stored in Secrets Manager.'
        )
        return result
    result["password_secret_arn"] = arn
    result["read_password_command"] = read_password_command(arn)
    result["message"] = {
        "created": f"@{username} created as {prepared['role']}, confirmed and approved.",
        "existing": f"@{username} already existed; role, confirmation and approval ensured; password unchanged.",
        "password_reset": f"@{username} already existed; role ensured and its password reset.",
    }.get(outcome, outcome) + " Read the password with read_password_command."
    return result


def failure_message(username: str, summary: dict[str, Any] | None) -> str:
    """Why the admin task failed, where its log is, and what to do (no secret: built from codes and names)."""
    summary = summary or {}
    where = f" Log stream: {summary['log_stream']} in {summary['log_group']} ({summary.get('log_link', '')})." if summary.get("log_stream") else ""
    if summary.get("error") == "States.Timeout":
        return (f"the admin task for @{username} did not finish in time (States.Timeout); Step Functions stops it. "
                "Whether the account was changed is unknown: run again (it is safe) once the cluster is healthy.")
    if summary.get("error"):
        return f"the admin task for @{username} did not complete: {summary['error']}: {summary.get('cause', '')[:500]}"
    code = summary.get("exit_code")
    if code is None:
        return (f"the admin task for @{username} never ran its container (stop code {summary.get('stop_code') or 'unknown'}: "
                f"{summary.get('stopped_reason') or summary.get('container_reason') or 'no reason given'}); nothing changed.{where}")
    reason = {
        EXIT_BAD_INPUT: "the script or Mastodon's validations refused the account (e.g. the email is taken)",
        EXIT_OTHER_REQUEST: "another create-admin execution replaced the pending secret meanwhile; nothing changed, run again",
    }.get(code, "the script failed")
    return f"the admin task for @{username} exited with code {code}: {reason}.{where}"

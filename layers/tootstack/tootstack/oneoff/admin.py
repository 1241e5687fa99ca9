"""The create-admin request: validation, the password secret, the pending secret, the result.

Flow (statemachines/create_admin.asl.json, Lambda functions/create_admin):

1. `prepare`: validate the console input (nothing is touched when it is invalid), take the staging
   secret `<stack>/admin-staging` for this execution, then make sure the per-user secret
   `<stack>/admin/<username>` holds the password (generated here, never returned). The admin task
   definition reads the staging secret through ECS `secrets` (RunTask overrides cannot set `secrets`,
   and a task definition must name its secrets in advance, so one fixed secret is written before each
   run). Returns only names, ARNs and version ids.
2. The state machine runs the admin task (`bin/rails runner` with create_admin.rb); the script checks
   that the staging secret belongs to its request (the execution name passed as ADMIN_REQUEST).
3. `finish`: promote a reset password in the user secret only when the task reported it used it, put
   the placeholder back into the staging secret (and strip the label from the version that held the
   password), and build the output: username, role, what happened, the secret's ARN and the CLI
   command that reads it.

Namespaces: user secrets are `<stack>/admin/<lower-cased username>` (the names operators already
have); the staging secret is `<stack>/admin-staging`, outside that namespace, so no username can name
it. A user secret is used only when it carries the tag `tootstack:purpose=admin-password` that
create-admin gives the secrets it creates.

One execution at a time: the staging secret is a lock. `prepare` moves its AWSCURRENT label from the
placeholder version to this request's version with UpdateSecretVersionStage naming the version it
expects to remove the label from; Secrets Manager refuses that move when the label is elsewhere, so
of two executions staging at once only one proceeds, the other fails with `AdminBusy` and changes
nothing. A holder older than the task timeout plus `STALE_MARGIN_SECONDS` (an execution that died
without its finish step; the staged JSON records `since`) is taken over.

Password resets are staged: the new password becomes a version of the user secret labelled AWSPENDING;
`finish` moves AWSCURRENT to it only when the task exits with "password reset" (or "created"), and
drops the label otherwise, so the secret always matches the account.

No function here logs, returns or raises with a password in it.
"""

from __future__ import annotations

import json
import re
import time
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
STAGED = "AWSPENDING"             # label of a version written but not yet in use
STALE_MARGIN_SECONDS = 900        # a staging holder older than the task timeout plus this has died
USER_SECRET_TAG = ("tootstack:purpose", "admin-password")


class AdminBusy(TootstackError):
    """Another create-admin execution holds the staging secret: nothing was changed."""


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
    try:
        return AdminRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"invalid create-admin input: {describe_errors(exc)}") from None


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
    """The staging secret: outside `<stack>/admin/`, so no username reaches it (template.yaml AdminPendingSecret)."""
    return f"{stack_name}/admin-staging"


def read_password_command(secret_arn: str) -> str:
    return f"aws secretsmanager get-secret-value --secret-id {secret_arn} --query SecretString --output text"


def generate_password() -> str:
    return alphanumeric(PASSWORD_LENGTH)


def _token(request: str, purpose: str) -> str:
    """A Secrets Manager ClientRequestToken that is the same on a retry of the same execution."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tootstack:{purpose}:{request}"))


def _is_client_error(exc: Exception, *codes: str) -> bool:
    return aws_error_code(exc) in codes


def describe_user_secret(sm: Any, stack_name: str, request: AdminRequest) -> dict[str, Any] | None:
    """The user's secret as DescribeSecret returns it, None when it does not exist yet. Refuses a secret that
    is scheduled for deletion or was not created by create-admin (the staging secret is outside
    `<stack>/admin/`, so no username names it)."""
    name = user_secret_name(stack_name, request.username)
    try:
        described = sm.describe_secret(SecretId=name)
    except Exception as exc:  # botocore ClientError
        if not _is_client_error(exc, "ResourceNotFoundException"):
            raise
        return None
    if described.get("DeletedDate"):
        raise TootstackError(
            f"secret {name} is scheduled for deletion: restore it (aws secretsmanager restore-secret "
            f"--secret-id {name}) or delete it for good, then run again"
        )
    tags = {t.get("Key"): t.get("Value") for t in described.get("Tags") or []}
    if tags.get(USER_SECRET_TAG[0]) != USER_SECRET_TAG[1]:
        raise TootstackError(
            f"secret {name} exists but is not a create-admin password secret (no tag "
            f"{USER_SECRET_TAG[0]}={USER_SECRET_TAG[1]}): nothing was changed; rename or delete that secret"
        )
    return described


def _current_version(described: dict[str, Any]) -> str:
    for version, stages in (described.get("VersionIdsToStages") or {}).items():
        if "AWSCURRENT" in stages:
            return version
    return ""


def _staging_holder(sm: Any, staging_id: str, stale_after: float) -> tuple[str, str, dict[str, list[str]]]:
    """(AWSCURRENT version id of the staging secret, the request holding it or "" when free or stale, the
    secret's version id -> labels map)."""
    described = sm.describe_secret(SecretId=staging_id)
    current = _current_version(described)
    try:
        staged = json.loads(sm.get_secret_value(SecretId=staging_id, VersionId=current)["SecretString"])
        holder, since = str(staged.get("request") or ""), float(staged.get("since") or 0)
    except (ValueError, TypeError, AttributeError):
        holder, since = "", 0.0
    if holder and time.time() - since > stale_after:
        holder = ""  # its execution died without the finish step: take it over
    return current, holder, described.get("VersionIdsToStages") or {}


def _unlabel(sm: Any, secret_id: str, version: str, stage: str) -> None:
    """Remove `stage` from `version` if it still carries it (idempotent)."""
    stages = (sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages") or {}).get(version, [])
    if stage in stages:
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage=stage, RemoveFromVersionId=version)


def acquire_staging(sm: Any, staging_id: str, request_id: str, username: str, password: str, stale_after: float) -> str:
    """Write this request's staging version and make it current only if the secret was free (see module doc).
    Returns the password staged: `password`, or the one an interrupted earlier attempt of this request wrote
    (Secrets Manager refuses a second value under the same ClientRequestToken). `prepare` has already
    handled the case where this request's version is current (`staged_password`)."""
    current, holder, versions = _staging_holder(sm, staging_id, stale_after)
    token = _token(request_id, "stage")
    if holder and holder != request_id:
        raise AdminBusy(f"another create-admin execution ({holder}) is running; nothing was changed: run again when it has finished")
    if token in versions:
        password = json.loads(sm.get_secret_value(SecretId=staging_id, VersionId=token)["SecretString"])["password"]
    else:
        sm.put_secret_value(SecretId=staging_id, ClientRequestToken=token, VersionStages=[STAGED], SecretString=json.dumps(
            {"username": username, "password": password, "request": request_id, "since": int(time.time())}))
    try:
        sm.update_secret_version_stage(SecretId=staging_id, VersionStage="AWSCURRENT", MoveToVersionId=token,
                                       RemoveFromVersionId=current)
    except Exception as exc:
        if not _is_client_error(exc, "InvalidParameterException", "InvalidRequestException"):
            raise
        _unlabel(sm, staging_id, token, STAGED)
        raise AdminBusy("another create-admin execution took the staging secret meanwhile; nothing was changed: "
                        "run again when it has finished") from None
    _unlabel(sm, staging_id, token, STAGED)
    return password


def staged_password(sm: Any, staging_id: str, request_id: str) -> str | None:
    """The password this request staged, when the staging secret's current version is this request's. Read by
    version id: a stale-holder takeover between the check and the read moves AWSCURRENT to another request's
    version, and that request's password must never come back here."""
    token = _token(request_id, "stage")
    if _current_version(sm.describe_secret(SecretId=staging_id)) != token:
        return None
    return json.loads(sm.get_secret_value(SecretId=staging_id, VersionId=token)["SecretString"])["password"]


def write_user_secret(sm: Any, stack_name: str, request: AdminRequest, request_id: str, described: dict[str, Any] | None,
                      password: str) -> tuple[str, bool, str]:
    """(secret ARN, created, staged version id or ""). A new secret holds `password` as current; a reset
    stages it as AWSPENDING for `finish` to promote. Idempotent for a retry of the same request id."""
    name = user_secret_name(stack_name, request.username)
    if described is None:
        try:
            created = sm.create_secret(
                Name=name,
                Description=f"Mastodon password of @{request.username} (tootstack create-admin)",
                SecretString=password,
                ClientRequestToken=_token(request_id, "create"),
                Tags=[{"Key": "tootstack:stack", "Value": stack_name}, {"Key": USER_SECRET_TAG[0], "Value": USER_SECRET_TAG[1]}],
            )
            return created["ARN"], True, ""
        except Exception as exc:
            if not _is_client_error(exc, "ResourceExistsException"):
                raise
            return sm.describe_secret(SecretId=name)["ARN"], True, ""  # created by this request's earlier attempt
    arn = described["ARN"]
    if not request.reset_password:
        return arn, False, ""
    token = _token(request_id, "reset")
    if token not in (described.get("VersionIdsToStages") or {}):
        sm.put_secret_value(SecretId=arn, SecretString=password, ClientRequestToken=token, VersionStages=[STAGED])
    return arn, False, token


def prepare(sm: Any, stack_name: str, pending_secret_id: str, data: Any, request_id: str, script: str,
            task_timeout_seconds: int = 900) -> dict[str, Any]:
    """Validate, take the staging secret, store the password; return what the state machine needs."""
    request = validate_admin_request(data)
    if not request_id or not isinstance(request_id, str):
        raise InvalidInput("prepare needs the execution name as 'request'")
    described = describe_user_secret(sm, stack_name, request)
    password = staged_password(sm, pending_secret_id, request_id)  # a retry of this request
    if password is None:
        if described is not None and not request.reset_password:
            password = sm.get_secret_value(SecretId=described["ARN"])["SecretString"]
        else:
            password = generate_password()
        password = acquire_staging(sm, pending_secret_id, request_id, request.username, password,
                                   stale_after=task_timeout_seconds + STALE_MARGIN_SECONDS)
    try:
        arn, created, staged_version = write_user_secret(sm, stack_name, request, request_id, described, password)
    except Exception:
        clear_pending(sm, pending_secret_id, request_id)  # give the staging secret back
        raise
    del password
    return {
        "username": request.username,
        "email": request.email,
        "role": request.role,
        "reset_password": "true" if request.reset_password else "false",
        "request": request_id,
        "secret_arn": arn,
        "secret_created": created,
        "staged_version": staged_version,
        "command": ["bin/rails", "runner", script],
        "task_timeout_seconds": task_timeout_seconds,
    }


def clear_pending(sm: Any, pending_secret_id: str, request_id: str) -> bool:
    """Put the placeholder back into the staging secret if this request holds it, and take every label off
    the version that held the password (Secrets Manager has no call that deletes one version: a version
    without labels is deprecated, served by no stage, and removed by Secrets Manager)."""
    token = _token(request_id, "stage")
    described = sm.describe_secret(SecretId=pending_secret_id)
    versions = described.get("VersionIdsToStages") or {}
    cleared = False
    if _current_version(described) == token:
        sm.put_secret_value(SecretId=pending_secret_id, SecretString=json.dumps(PENDING_PLACEHOLDER),
                            ClientRequestToken=_token(request_id, "placeholder"))
        cleared = True
        versions = sm.describe_secret(SecretId=pending_secret_id).get("VersionIdsToStages") or {}
    for stage in versions.get(token, []):
        if stage != "AWSCURRENT":
            sm.update_secret_version_stage(SecretId=pending_secret_id, VersionStage=stage, RemoveFromVersionId=token)
    return cleared


def settle_reset(sm: Any, prepared: dict[str, Any], outcome: str) -> bool:
    """Promote the staged password when the task used it ("created" or "password_reset"), else drop it.
    Returns True when the user secret now holds the staged password. Idempotent."""
    version, arn = prepared.get("staged_version") or "", prepared.get("secret_arn") or ""
    if not version or not arn:
        return False
    try:
        stages = sm.describe_secret(SecretId=arn).get("VersionIdsToStages") or {}
    except Exception as exc:
        if _is_client_error(exc, "ResourceNotFoundException"):
            return False
        raise
    if outcome in ("created", "password_reset"):
        current = next((v for v, s in stages.items() if "AWSCURRENT" in s), "")
        if current != version:
            sm.update_secret_version_stage(SecretId=arn, VersionStage="AWSCURRENT", MoveToVersionId=version,
                                           RemoveFromVersionId=current)
        if STAGED in stages.get(version, []):
            sm.update_secret_version_stage(SecretId=arn, VersionStage=STAGED, RemoveFromVersionId=version)
        return True
    if STAGED in stages.get(version, []):
        sm.update_secret_version_stage(SecretId=arn, VersionStage=STAGED, RemoveFromVersionId=version)
    return False


def finish(sm: Any, pending_secret_id: str, prepared: dict[str, Any], outcome: str, task_summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settle a staged reset, clear the staging secret and build the execution's result for `outcome`
    ("created", "existing", "password_reset" or "failed")."""
    if not isinstance(prepared, dict) or not all(isinstance(prepared.get(k), str) and prepared.get(k)
                                                  for k in ("request", "username", "secret_arn", "role")):
        raise InvalidInput("finish needs the 'prepared' state of the prepare step (request, username, role, secret_arn)")
    if outcome not in ("created", "existing", "password_reset", "failed"):
        raise InvalidInput(f"unknown outcome {outcome!r}: expected created, existing, password_reset or failed")
    settle_reset(sm, prepared, outcome)
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
        if prepared.get("staged_version"):
            result["message"] += " The password secret was left as it was (the new password was not promoted)."
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

"""Generate-once bootstrap of the stack's secrets in Secrets Manager.

Each secret is a JSON document. A run reads the AWSCURRENT version, generates values only for keys that
are missing or empty, and writes a new version only when it generated something: an existing value is
never replaced, so updates and re-runs change nothing. The write uses a ClientRequestToken derived from
the version it read, so two racing runs cannot both write (the second gets ResourceExistsException and
a retry then sees the keys present) and a retried write after a lost response is a no-op.

Secrets (logical ids in template.yaml):
- AppSecrets: SECRET_KEY_BASE, OTP_SECRET, VAPID_PRIVATE_KEY, VAPID_PUBLIC_KEY and the three
  ACTIVE_RECORD_ENCRYPTION_* keys;
- DatabaseSecret, RedisSecret: {"username", "password"};
- SmtpSecret: {"username": IAM access key id, "password": the SES SMTP password derived from its secret
  access key}. The secret access key itself is never stored or returned.

The secrets carry DeletionPolicy/UpdateReplacePolicy Retain: deleting or recreating the stack keeps them,
and a new stack must be pointed at the retained secrets (not at freshly generated ones) when its data
(database, encrypted columns, 2FA, push subscriptions) comes from the old one.

Return values and errors name keys and secrets, never values.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import ClientError

from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError
from tootstack.secrets.generate import alphanumeric, check_vapid_pair, missing_app_secrets, ses_smtp_password

_TOKEN_NAMESPACE = uuid.UUID("6f1c2b8e-6d55-4a8e-9a53-2f1a4c3b7d10")
DEFAULT_DB_USERNAME = "mastodon"
DEFAULT_REDIS_USERNAME = "mastodon"


@dataclass
class BootstrapConfig:
    app_secret_id: str
    database_secret_id: str
    redis_secret_id: str
    smtp_secret_id: str | None = None
    smtp_user_name: str | None = None        # IAM user allowed to ses:SendRawEmail (its access key = SMTP login)
    ses_region: str | None = None
    database_username: str = DEFAULT_DB_USERNAME
    redis_username: str = DEFAULT_REDIS_USERNAME

    @classmethod
    def from_properties(cls, props: dict[str, Any], default_region: str | None) -> "BootstrapConfig":
        """From custom resource properties (AppSecretArn, DatabaseSecretArn, RedisSecretArn, optional
        SmtpSecretArn + SmtpUserName, SesRegion)."""
        missing = [k for k in ("AppSecretArn", "DatabaseSecretArn", "RedisSecretArn") if not props.get(k)]
        if missing:
            raise InvalidInput(f"secrets bootstrap: missing properties {', '.join(missing)}")
        if bool(props.get("SmtpSecretArn")) != bool(props.get("SmtpUserName")):
            raise InvalidInput("secrets bootstrap: SmtpSecretArn and SmtpUserName go together")
        return cls(
            app_secret_id=props["AppSecretArn"],
            database_secret_id=props["DatabaseSecretArn"],
            redis_secret_id=props["RedisSecretArn"],
            smtp_secret_id=props.get("SmtpSecretArn") or None,
            smtp_user_name=props.get("SmtpUserName") or None,
            ses_region=props.get("SesRegion") or default_region,
            database_username=props.get("DatabaseUsername") or DEFAULT_DB_USERNAME,
            redis_username=props.get("RedisUsername") or DEFAULT_REDIS_USERNAME,
        )


@dataclass
class BootstrapResult:
    generated: dict[str, list[str]] = field(default_factory=dict)   # secret id -> key names generated now
    kept: dict[str, list[str]] = field(default_factory=dict)        # secret id -> key names already there

    def summary(self) -> dict[str, str]:
        """Non-secret summary (key names only) for custom resource Data and logs."""
        return {
            "Generated": ",".join(sorted(f"{_short(s)}:{k}" for s, keys in self.generated.items() for k in keys)) or "none",
            "Kept": str(sum(len(v) for v in self.kept.values())),
        }


def _short(secret_id: str) -> str:
    """A secret's name from its ARN or name (for messages)."""
    if ":secret:" in secret_id:
        name = secret_id.split(":secret:", 1)[1]
        return name[:-7] if len(name) > 7 and name[-7] == "-" else name  # drop the random ARN suffix
    return secret_id


def read_json_secret(sm: Any, secret_id: str) -> tuple[dict[str, Any], str | None]:
    """(document, AWSCURRENT version id). A secret with no value yet reads as ({}, None)."""
    try:
        response = sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ResourceNotFoundException":
            # A secret created without a value has no AWSCURRENT version; a missing secret fails on write.
            try:
                sm.describe_secret(SecretId=secret_id)
            except ClientError:
                raise InvalidInput(f"secret {_short(secret_id)} does not exist") from None
            return {}, None
        raise DependencyUnavailable(f"cannot read secret {_short(secret_id)}: {code}") from None
    text = response.get("SecretString")
    if text is None:
        raise InvalidInput(f"secret {_short(secret_id)} holds binary data, not a JSON object: nothing changed")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise InvalidInput(f"secret {_short(secret_id)} is not a JSON object: nothing changed")
    return document, response["VersionId"]


def ensure_json_secret(sm: Any, secret_id: str, fill: Callable[[dict[str, Any]], dict[str, Any]], result: BootstrapResult) -> dict[str, Any]:
    """Add fill(document)'s keys to the secret where missing; never replace a present value."""
    document, version = read_json_secret(sm, secret_id)
    additions = {k: v for k, v in fill(document).items() if not document.get(k)}
    result.kept[secret_id] = sorted(k for k in document if document.get(k))
    if not additions:
        result.generated[secret_id] = []
        return document
    merged = {**document, **additions}
    _put_version(sm, secret_id, merged, f"{secret_id}|{version or 'initial'}|{','.join(sorted(additions))}")
    result.generated[secret_id] = sorted(additions)
    return merged


def _put_version(sm: Any, secret_id: str, document: dict[str, Any], token_seed: str) -> None:
    """Write `document` as the secret's new version; the token derives from what is written, so a retry
    of the same write is idempotent and a concurrent different one is refused."""
    token = str(uuid.uuid5(_TOKEN_NAMESPACE, token_seed))
    try:
        sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(document), ClientRequestToken=token)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ResourceExistsException":
            raise TootstackError(
                f"secret {_short(secret_id)} was changed concurrently; re-run the bootstrap (it keeps existing values)"
            ) from None
        raise DependencyUnavailable(f"cannot write secret {_short(secret_id)}: {code}") from None


def _app_fill(document: dict[str, Any]) -> dict[str, Any]:
    if document.get("VAPID_PRIVATE_KEY") and document.get("VAPID_PUBLIC_KEY"):
        check_vapid_pair(document["VAPID_PRIVATE_KEY"], document["VAPID_PUBLIC_KEY"])
    return missing_app_secrets(document)


def _credential_fill(username: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fill(document: dict[str, Any]) -> dict[str, Any]:
        return {"username": username, "password": alphanumeric(40)}

    return fill


def ensure_smtp_secret(sm: Any, iam: Any, secret_id: str, user_name: str, region: str, result: BootstrapResult) -> None:
    """SMTP login = an access key of the dedicated IAM user, password = its SES SMTP password.

    Creates an access key only when the secret has no complete credential. Keys of that user that the
    secret does not record are unusable (their secret access key was never stored: an earlier run died
    between CreateAccessKey and the write) and are deleted first, so retries never pile up keys."""
    document, version = read_json_secret(sm, secret_id)
    if document.get("username") and document.get("password"):
        result.kept[secret_id] = ["password", "username"]
        result.generated[secret_id] = []
        return
    try:
        keys = iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
        for key in keys:
            iam.delete_access_key(UserName=user_name, AccessKeyId=key["AccessKeyId"])
        created = iam.create_access_key(UserName=user_name)["AccessKey"]
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "NoSuchEntity":
            raise InvalidInput(f"SMTP IAM user {user_name} does not exist: nothing changed") from None
        raise DependencyUnavailable(f"cannot create an access key for SMTP user {user_name}: {code}") from None
    password = ses_smtp_password(created["SecretAccessKey"], region)
    # Without a username any password in the secret is a placeholder (the template's generated one),
    # never a usable SMTP credential: both keys are written together.
    merged = {**document, "username": created["AccessKeyId"], "password": password}
    _put_version(sm, secret_id, merged, f"{secret_id}|{version or 'initial'}|smtp|{created['AccessKeyId']}")
    result.kept[secret_id] = []
    result.generated[secret_id] = ["password", "username"]


def run_bootstrap(config: BootstrapConfig, sm: Any = None, iam: Any = None) -> BootstrapResult:
    """Fill every secret's missing keys. Safe to run any number of times."""
    import boto3

    sm = sm or boto3.client("secretsmanager")
    result = BootstrapResult()
    ensure_json_secret(sm, config.app_secret_id, _app_fill, result)
    ensure_json_secret(sm, config.database_secret_id, _credential_fill(config.database_username), result)
    ensure_json_secret(sm, config.redis_secret_id, _credential_fill(config.redis_username), result)
    if config.smtp_secret_id and config.smtp_user_name:
        if not config.ses_region:
            raise InvalidInput("secrets bootstrap: SesRegion is needed to derive the SMTP password")
        ensure_smtp_secret(sm, iam or boto3.client("iam"), config.smtp_secret_id, config.smtp_user_name, config.ses_region, result)
    return result

"""Redis credential setup and rotation with the Secrets Manager rotation protocol, without lockout.

Invariant: the password the running Mastodon tasks hold (AWSCURRENT when they started, or AWSPREVIOUS
after a finished rotation until they are replaced) is valid on the server at every point, so an
interruption anywhere leaves Mastodon able to connect, and running the same step again (or the
whole rotation again) completes it.

- createSecret: store a new password as AWSPENDING (version id = ClientRequestToken; idempotent). A
  stray AWSPENDING from an abandoned rotation is removed first (it was never made current).
- setSecret: refuse with a clear error, changing nothing, unless AWSCURRENT really authenticates. If the
  previous rotation never confirmed its redeploy (tag `tootstack:redis-completed` is not on AWSCURRENT),
  finish it first (tasks may still hold AWSPREVIOUS, and ElastiCache keeps only two passwords). Then
  add the AWSPENDING password to the user (the old one stays valid). Stored before applied.
- testSecret: real AUTH + PING (TLS when on) with AWSPENDING, and with AWSCURRENT (still valid).
- finishSecret: verify AWSPENDING once more, move AWSCURRENT to it (the old version becomes
  AWSPREVIOUS), drop AWSPENDING; force a new deployment of every service and wait until they run the
  new value (tag `tootstack:redis-redeployed` on the secret records it, so a re-run does not restart
  tasks twice); only then remove the old password, and verify the new one again.
- setup (first boot, also safe on a running stack): when AWSCURRENT does not authenticate yet, create
  or update the `mastodon` user with it; verify; then switch off the open `default` user.

Messages and logs name steps, users, version ids and endpoints; never a password.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

from botocore.exceptions import ClientError

from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError
from tootstack.redis_auth.backends import RedisAuthBackend
from tootstack.redis_auth.credentials import AuthenticationFailed, Credential, Endpoint, verify

PENDING, CURRENT, PREVIOUS = "AWSPENDING", "AWSCURRENT", "AWSPREVIOUS"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
REDEPLOYED_TAG = "tootstack:redis-redeployed"   # version the services were last forced onto
COMPLETED_TAG = "tootstack:redis-completed"     # version whose rotation finished (old passwords retired)


class CurrentCredentialRefused(AuthenticationFailed):
    """AWSCURRENT does not authenticate: a rotation cannot safely start; nothing was changed."""


def _password(length: int = 40) -> str:
    from tootstack.secrets.generate import alphanumeric

    return alphanumeric(length)


Verifier = Callable[[Credential, str], None]


@dataclass
class RedisRotation:
    sm: Any                                   # boto3 Secrets Manager client
    secret_id: str
    backend: RedisAuthBackend
    verifier: Verifier                        # AUTH + PING with a credential, raises AuthenticationFailed
    redeployer: Any = None                    # EcsRedeployer or None (no services to move)
    logger: Any = logging.getLogger("tootstack.redis_auth")
    new_password: Callable[[], str] = _password

    @classmethod
    def direct(cls, sm: Any, secret_id: str, backend: RedisAuthBackend, endpoint: Endpoint, **kwargs: Any) -> "RedisRotation":
        return cls(sm, secret_id, backend, lambda cred, what: verify(endpoint, cred, what), **kwargs)

    # --- secret access ------------------------------------------------------------------------------
    def _describe(self) -> dict[str, Any]:
        try:
            return self.sm.describe_secret(SecretId=self.secret_id)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ResourceNotFoundException":
                raise InvalidInput(f"secret {self.secret_id} does not exist") from None
            raise DependencyUnavailable(f"cannot describe secret {self.secret_id}: {code}") from None

    def _document(self, **selector: str) -> dict[str, Any]:
        try:
            text = self.sm.get_secret_value(SecretId=self.secret_id, **selector).get("SecretString")
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ResourceNotFoundException":
                raise InvalidInput(f"secret {self.secret_id} has no value for {selector}") from None
            raise DependencyUnavailable(f"cannot read secret {self.secret_id} {selector}: {code}") from None
        try:
            document = json.loads(text or "")
        except json.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            raise InvalidInput(f"secret {self.secret_id} {selector} is not a JSON object")
        return document

    def _credential(self, what: str, **selector: str) -> Credential:
        return Credential.from_document(self._document(**selector), f"secret {self.secret_id} {what}")

    def _current(self) -> Credential:
        return self._credential(CURRENT, VersionStage=CURRENT)

    def _pending(self, token: str) -> Credential:
        return self._credential(f"version {token} ({PENDING})", VersionId=token, VersionStage=PENDING)

    @staticmethod
    def _stages(described: dict[str, Any]) -> dict[str, list[str]]:
        return described.get("VersionIdsToStages", {})

    @staticmethod
    def _tags(described: dict[str, Any]) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in described.get("Tags", [])}

    # --- protocol -----------------------------------------------------------------------------------
    def run_step(self, step: str, token: str, described: dict[str, Any] | None = None) -> dict[str, str]:
        """One step of the protocol; `described`: this secret's DescribeSecret answer if the caller has it."""
        if step not in STEPS:
            raise InvalidInput(f"unknown rotation step {step!r}: expected one of {', '.join(STEPS)}")
        if not token:
            raise InvalidInput("ClientRequestToken is required")
        described = self._describe() if described is None else described
        stages = self._stages(described)
        if step != "createSecret" and token not in stages:
            raise InvalidInput(f"secret version {token} does not exist: run createSecret first")
        if CURRENT in stages.get(token, []) and step != "finishSecret":
            self.logger.info("rotation step skipped: version already current", extra={"step": step, "version": token})
            return {"step": step, "status": "already current"}
        status = getattr(self, "_" + step)(token, described)
        self.logger.info("rotation step done", extra={"step": step, "version": token, "status": status})
        return {"step": step, "status": status}

    def _createSecret(self, token: str, described: dict[str, Any]) -> str:  # protocol names
        stages = self._stages(described)
        try:
            self._pending(token)
            return "pending version exists"
        except InvalidInput:
            pass
        document = self._document(VersionStage=CURRENT)
        Credential.from_document(document, f"secret {self.secret_id} {CURRENT}")
        for version, labels in stages.items():
            if PENDING in labels and version != token and CURRENT not in labels:
                self.sm.update_secret_version_stage(SecretId=self.secret_id, VersionStage=PENDING, RemoveFromVersionId=version)
                self.logger.warning("removed stray AWSPENDING of an abandoned rotation", extra={"version": version})
        new_document = {**document, "password": self.new_password()}
        self.sm.put_secret_value(
            SecretId=self.secret_id, ClientRequestToken=token,
            SecretString=json.dumps(new_document), VersionStages=[PENDING],
        )
        return "pending version stored"

    def _require_current_works(self) -> Credential:
        current = self._current()
        try:
            self.verifier(current, CURRENT)
        except AuthenticationFailed as exc:
            raise CurrentCredentialRefused(
                f"{exc}; the secret's AWSCURRENT does not match the server: nothing was changed "
                "(run the first-boot Redis setup, or restore the password the tasks use as AWSCURRENT)"
            ) from None
        return current

    def _setSecret(self, token: str, described: dict[str, Any]) -> str:
        pending = self._pending(token)
        current = self._require_current_works()
        # A previous rotation that moved AWSCURRENT but could not confirm the redeploy left tasks that
        # may hold AWSPREVIOUS; ElastiCache keeps only two passwords, so adding a third would drop it.
        # Finish that rotation first (redeploy confirmed, then retire), or fail here having changed nothing.
        stages = self._stages(described)
        current_version = next((v for v, labels in stages.items() if CURRENT in labels), None)
        has_previous = any(PREVIOUS in labels for labels in stages.values())
        tags = self._tags(described)
        if has_previous and current_version and tags.get(COMPLETED_TAG) != current_version:
            self.logger.info("finishing the previous rotation first", extra={"version": current_version})
            self._complete(current_version, current, tags)
        self.backend.add_password(current, pending)
        return "pending password added; current still valid"

    def _testSecret(self, token: str, described: dict[str, Any]) -> str:
        self.verifier(self._pending(token), PENDING)
        self.verifier(self._current(), CURRENT)
        return "pending and current both authenticate"

    def _finishSecret(self, token: str, described: dict[str, Any]) -> str:
        stages = self._stages(described)
        current_version = next((v for v, labels in stages.items() if CURRENT in labels), None)
        new = self._credential(f"version {token}", VersionId=token)
        if current_version != token:
            self.verifier(new, PENDING)  # never make current what the server refuses
            self.sm.update_secret_version_stage(
                SecretId=self.secret_id, VersionStage=CURRENT, MoveToVersionId=token, RemoveFromVersionId=current_version,
            )
            self.logger.info("AWSCURRENT moved", extra={"version": token, "previous": current_version})
        if PENDING in stages.get(token, []):
            self.sm.update_secret_version_stage(SecretId=self.secret_id, VersionStage=PENDING, RemoveFromVersionId=token)
        self._complete(token, new, self._tags(described))
        return "current moved, services redeployed, old password retired"

    def _complete(self, version: str, credential: Credential, tags: dict[str, str]) -> None:
        """Services onto `version` (forced once, recorded by tag; `tags` as described at the start of
        this step), confirmed running; then only its password stays valid, verified; recorded as completed."""
        if self.redeployer is not None:
            if tags.get(REDEPLOYED_TAG) != version:
                self.redeployer.redeploy()
                self.sm.tag_resource(SecretId=self.secret_id, Tags=[{"Key": REDEPLOYED_TAG, "Value": version}])
                self.logger.info("services redeployed onto the new credential", extra={"services": list(self.redeployer.services)})
            self.redeployer.wait()
        self.backend.retire_others(credential)
        self.verifier(credential, CURRENT)
        self.sm.tag_resource(SecretId=self.secret_id, Tags=[{"Key": COMPLETED_TAG, "Value": version}])

    # --- operator resume ----------------------------------------------------------------------------
    def resume(self) -> dict[str, str]:
        """Finish whatever an interrupted rotation left (Secrets Manager refuses a new RotateSecret while a
        stray AWSPENDING exists): run setSecret/testSecret/finishSecret for the pending version, or, when
        AWSCURRENT moved but its redeploy was never confirmed, complete that. Idempotent."""
        described = self._describe()
        stages = self._stages(described)
        pending = [v for v, labels in stages.items() if PENDING in labels and CURRENT not in labels]
        if pending:
            for step in STEPS[1:]:
                self.run_step(step, pending[0])
            return {"step": "resume", "status": f"rotation {pending[0]} finished"}
        current_version = next((v for v, labels in stages.items() if CURRENT in labels), None)
        tags = self._tags(described)
        if current_version and any(PREVIOUS in labels for labels in stages.values()) and tags.get(COMPLETED_TAG) != current_version:
            self._complete(current_version, self._current(), tags)
            return {"step": "resume", "status": f"rotation {current_version} completed"}
        return {"step": "resume", "status": "nothing to resume"}

    # --- first boot ---------------------------------------------------------------------------------
    def setup(self) -> dict[str, str]:
        current = self._current()
        try:
            self.verifier(current, CURRENT)
            status = "already configured"
        except AuthenticationFailed:
            self.backend.ensure_user(current)
            self.verifier(current, CURRENT)
            status = "user configured"
        self.backend.lock_default_user()
        self.verifier(current, CURRENT)
        self.logger.info("redis auth setup done", extra={"status": status, "user": current.username, "backend": self.backend.name})
        return {"step": "setup", "status": status, "user": current.username, "backend": self.backend.name}


def check_secret_matches(described: dict[str, Any], expected_arn: str | None) -> None:
    """The rotation Lambda serves one secret: refuse events for any other (nothing changed)."""
    if expected_arn and described.get("ARN") != expected_arn and described.get("Name") != expected_arn:
        raise InvalidInput(f"this function rotates {expected_arn}, not {described.get('ARN')}")


__all__ = ["RedisRotation", "CurrentCredentialRefused", "STEPS", "TootstackError"]

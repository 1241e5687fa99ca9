"""Where a Redis credential is applied: one interface, two backends.

Both model the same thing: a dedicated `mastodon` user with at most two valid passwords, so a rotation
can add the new password before removing the old one (no moment where the tasks' password is refused).

- AclBackend: Redis >= 6 ACLs over a privileged connection (self-hosted Redis, the local rehearsal).
  `ACL SETUSER mastodon on >NEW` adds a password and keeps the others; `ACL SETUSER mastodon resetpass
  >KEEP` (one command, applied atomically) leaves exactly one. The `default` user is switched off once
  the `mastodon` user is verified, so nothing stays open without AUTH.
- ElastiCacheRbacBackend: ElastiCache RBAC (Redis OSS 6+/Valkey). Chosen over AuthToken ROTATE/SET:
  * the same two-password user model as the ACL backend (ModifyUser Passwords=[old, new], then [new]);
    one rotation protocol, one set of tests;
  * AuthToken changes go through ModifyReplicationGroup: a cluster-wide modification (one at a time,
    competing with CloudFormation updates of the same resource, which also owns AuthToken and would
    drift), and the token belongs to `default`, which has every command including the admin ones;
  * RBAC lets the `default` user be switched off and the `mastodon` user be limited to the commands
    Mastodon uses (no @admin / @dangerous-admin commands); Mastodon >= 4.3 supports REDIS_USER;
  * Secrets Manager's own ElastiCache user rotation uses the same secret shape (username, password).
  ModifyUser is asynchronous (user status `modifying`): every change waits for `active` before the
  credential is tested.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from tootstack.errors import DependencyUnavailable, InvalidInput, TootstackError
from tootstack.redis_auth.credentials import Credential

# Mastodon (Rails cache, Sidekiq, streaming pub/sub) needs keys, channels and the data commands; not the
# administrative ones (ACL, CONFIG, SHUTDOWN, DEBUG, REPLICAOF, MONITOR, ...).
MASTODON_ACL_RULES = ("~*", "&*", "+@all", "-@admin")
MASTODON_ACCESS_STRING = "on ~* &* +@all -@admin"


class RedisAuthBackend(Protocol):
    name: str

    def ensure_user(self, credential: Credential) -> None:
        """First boot: the user exists, is enabled, and `credential` is one of its valid passwords."""

    def add_password(self, current: Credential, new: Credential) -> None:
        """Make `new` valid while `current` stays valid (idempotent)."""

    def retire_others(self, keep: Credential) -> None:
        """Leave `keep` as the user's only valid password (idempotent)."""

    def lock_default_user(self) -> None:
        """No unauthenticated access through the `default` user (idempotent)."""


class AclBackend:
    """Redis ACL users over a privileged connection (`admin` returns a connected redis.Redis)."""

    name = "redis-acl"

    def __init__(self, admin: Callable[[], Any], persist: bool = True) -> None:
        self._admin = admin
        self._persist = persist

    def _run(self, *command: str) -> Any:
        import redis

        client = self._admin()
        try:
            return client.execute_command(*command)
        except redis.exceptions.AuthenticationError:
            raise TootstackError("the privileged Redis connection was refused (check the admin credential)") from None
        except redis.exceptions.ResponseError as exc:
            # Redis echoes the offending rule, which may hold a password: keep only the error code
            code = (str(exc).split() or ["ERR"])[0][:16]
            raise DependencyUnavailable(f"Redis refused {command[0]} {command[1]} ({code})") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise DependencyUnavailable(f"cannot reach Redis for {command[0]} {command[1]}: {type(exc).__name__}") from None
        finally:
            client.close()

    def _setuser(self, username: str, *rules: str) -> None:
        self._run("ACL", "SETUSER", username, *rules)
        self._save()

    def _save(self) -> None:
        """Persist ACL changes across a restart: ACL SAVE with an aclfile, CONFIG REWRITE otherwise."""
        if not self._persist:
            return
        try:
            self._run("ACL", "SAVE")
        except DependencyUnavailable:
            try:
                self._run("CONFIG", "REWRITE")
            except DependencyUnavailable:
                pass  # a server without a config file keeps ACLs in memory only (documented)

    def ensure_user(self, credential: Credential) -> None:
        self._setuser(credential.username, "on", f">{credential.password}", *MASTODON_ACL_RULES)

    def add_password(self, current: Credential, new: Credential) -> None:
        if current.username != new.username:
            raise InvalidInput("a rotation keeps the Redis username: AWSPENDING names another user than AWSCURRENT")
        self._setuser(new.username, "on", f">{new.password}", *MASTODON_ACL_RULES)

    def retire_others(self, keep: Credential) -> None:
        self._setuser(keep.username, "on", "resetpass", f">{keep.password}", *MASTODON_ACL_RULES)

    def lock_default_user(self) -> None:
        self._setuser("default", "off", "resetpass", "-@all")

    def password_count(self, username: str) -> int:
        """Number of valid passwords of `username` (ACL GETUSER; hashes only, never values)."""
        info = self._run("ACL", "GETUSER", username)
        if info is None:
            return 0
        fields = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else info
        return len(fields.get("passwords", []))


class ElastiCacheRbacBackend:
    """ElastiCache RBAC: user `user_id` (user name from the credential) in user group `user_group_id`."""

    name = "elasticache-rbac"

    def __init__(self, client: Any, user_id: str, user_group_id: str, replication_group_id: str | None = None,
                 engine: str = "valkey", wait_seconds: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep, poll_seconds: float = 5.0) -> None:
        self._ec = client
        self.user_id = user_id
        self.user_group_id = user_group_id
        self.replication_group_id = replication_group_id
        self.engine = engine
        self._wait_seconds = wait_seconds
        self._sleep = sleep
        self._poll = poll_seconds

    def _user(self) -> dict[str, Any] | None:
        try:
            users = self._ec.describe_users(UserId=self.user_id)["Users"]
        except self._ec.exceptions.UserNotFoundFault:
            return None
        return users[0] if users else None

    def _wait_for(self, what: str, ready: str, describe: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Poll `describe` until the resource's Status is `ready`; re-running the step continues a timed-out wait."""
        deadline = time.monotonic() + self._wait_seconds
        while True:
            found = describe()
            if found is None:
                raise TootstackError(f"{what} disappeared while waiting for it")
            if found.get("Status") == ready:
                return found
            if time.monotonic() > deadline:
                raise DependencyUnavailable(f"{what} still {found.get('Status')} after {self._wait_seconds:.0f}s; re-run to continue")
            self._sleep(self._poll)

    def _wait_user_active(self) -> dict[str, Any]:
        return self._wait_for(f"ElastiCache user {self.user_id}", "active", self._user)

    def _wait_group_active(self) -> dict[str, Any]:
        return self._wait_for(f"ElastiCache user group {self.user_group_id}", "active",
                              lambda: self._ec.describe_user_groups(UserGroupId=self.user_group_id)["UserGroups"][0])

    def ensure_user(self, credential: Credential) -> None:
        self.put_user(credential)
        self.ensure_in_group()
        self.ensure_group_attached()

    def ensure_group_attached(self) -> None:
        """The replication group authenticates through the user group (an open cluster created without
        AUTH is switched to RBAC here: ModifyReplicationGroup UserGroupIdsToAdd, applied immediately)."""
        if not self.replication_group_id:
            return
        group = self._wait_replication_group_available()
        if self.user_group_id in group.get("UserGroupIds", []):
            return
        self._ec.modify_replication_group(
            ReplicationGroupId=self.replication_group_id, UserGroupIdsToAdd=[self.user_group_id], ApplyImmediately=True,
        )
        self._wait_replication_group_available()

    def _wait_replication_group_available(self) -> dict[str, Any]:
        return self._wait_for(f"replication group {self.replication_group_id}", "available", self._replication_group)

    def _replication_group(self) -> dict[str, Any]:
        groups = self._ec.describe_replication_groups(ReplicationGroupId=self.replication_group_id)["ReplicationGroups"]
        if not groups:
            raise InvalidInput(f"ElastiCache replication group {self.replication_group_id} not found")
        return groups[0]

    def put_user(self, credential: Credential) -> None:
        """The user exists with `credential` as its password (created, or its passwords replaced)."""
        user = self._user()
        if user is None:
            self._ec.create_user(
                UserId=self.user_id, UserName=credential.username, Engine=self.engine,
                Passwords=[credential.password], AccessString=MASTODON_ACCESS_STRING,
            )
        else:
            if user.get("UserName") != credential.username:
                raise InvalidInput(f"ElastiCache user {self.user_id} is named {user.get('UserName')}, the secret says {credential.username}: nothing changed")
            # Setup runs only when the credential does not authenticate: make it the user's password.
            self._ec.modify_user(UserId=self.user_id, Passwords=[credential.password], AccessString=MASTODON_ACCESS_STRING)
        self._wait_user_active()

    def ensure_in_group(self) -> None:
        group = self._wait_group_active()
        if self.user_id not in group.get("UserIds", []):
            self._ec.modify_user_group(UserGroupId=self.user_group_id, UserIdsToAdd=[self.user_id])
            self._wait_group_active()

    def add_password(self, current: Credential, new: Credential) -> None:
        if current.username != new.username:
            raise InvalidInput("a rotation keeps the Redis username: AWSPENDING names another user than AWSCURRENT")
        if current.password == new.password:
            passwords = [current.password]
        else:
            passwords = [current.password, new.password]
        self._wait_user_active()
        self._ec.modify_user(UserId=self.user_id, Passwords=passwords)
        self._wait_user_active()

    def retire_others(self, keep: Credential) -> None:
        self._wait_user_active()
        # Always set it (idempotent): a count of one does not say which password is left.
        self._ec.modify_user(UserId=self.user_id, Passwords=[keep.password])
        self._wait_user_active()

    def lock_default_user(self) -> None:
        """The template puts a disabled user named `default` in the user group (ElastiCache requires a
        user named default); check that the group's default is not an open one."""
        group = self._wait_group_active()
        if "default" in group.get("UserIds", []):
            raise TootstackError(
                f"ElastiCache user group {self.user_group_id} still contains the built-in open `default` user: "
                "replace it with the disabled default user of the template"
            )
        self.ensure_group_attached()

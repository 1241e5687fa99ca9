"""Redis authentication for Mastodon: first-boot setup and rotation without lockout.

- `credentials`: the credential type (never printed) and the real AUTH + PING check (TLS when on).
- `backends`: where a credential is applied. `AclBackend` (plain Redis >= 6 ACL users: self-hosted
  Redis and the local rehearsal) and `ElastiCacheRbacBackend` (ElastiCache RBAC user `mastodon` in the
  replication group's user group). Both keep up to two passwords valid for the `mastodon` user.
- `rotation`: the Secrets Manager rotation protocol (createSecret, setSecret, testSecret, finishSecret)
  plus the first-boot `setup`; `redeploy`: ECS services forced onto the new credential before the old one
  is retired.
"""

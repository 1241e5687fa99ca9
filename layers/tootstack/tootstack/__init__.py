"""tootstack: deploy and run a production Mastodon server on AWS (shared package, shipped as a Lambda layer).

Product code only: the handlers in functions/ import these capabilities; the command line, the local AWS
emulation, the rehearsal and the cost model live in the development package tootstack_dev, which never
ships. Each capability is a module (or package, with its own `__all__`), imported where it is used, so a
handler's cold start loads only what it calls:

- secrets, redis_auth, first_boot, locks: first boot (generated secrets, Redis auth, one execution at a time)
- mirror: images copied into ECR, pinned by digest
- deploy_guard, upgrade, maintenance: a deploy, an upgrade and scheduled maintenance, one after another
- oneoff: allow-listed one-off commands and the admin account
- crashloop, autoscale, preflight: crashloop detection, queue-latency autoscaling with a Spot fallback, checks
- cfn_custom, clients, errors, tracing: custom-resource answers, boto3 clients, errors, X-Ray patching
- contracts, deploy_guard_events, first_boot_events, scheduled: the events each handler parses at its edge
  (packages keep theirs beside their code, e.g. upgrade.events)
"""

__version__ = "0.1.0"

__all__ = [
    "autoscale", "cfn_custom", "clients", "contracts", "crashloop", "deploy_guard", "deploy_guard_events", "errors",
    "first_boot", "first_boot_events", "locks", "maintenance", "mirror", "oneoff", "preflight", "redis_auth",
    "scheduled", "secrets", "tracing", "upgrade",
]

"""Mastodon upgrades: statemachines/upgrade.asl.json with functions/upgrade. See docs/day2.md.

Order: prepare (validate, refuse downgrade/unknown, take the upgrade lock) -> mirror the release's images
into ECR -> register task definitions pinned to the mirrored digests (not deployed yet: the toolbox
revision must exist for the migrations, RunTask cannot override an image) -> pre-deployment migrations
(SKIP_POST_DEPLOYMENT_MIGRATIONS=true rails db:migrate) -> deploy services (the scheduler with
maximumPercent 100 / minimumHealthyPercent 0: never two schedulers) -> guard (steady state, or roll back
when the circuit breaker fails a deployment or the crashloop detector halts a service) ->
post-deployment migrations -> record the version, release the lock.
"""

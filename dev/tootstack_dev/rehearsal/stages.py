"""The rehearsal's lifecycle stages, in the order they run.

A stage module exposes:
    NAME: str                      # e.g. "mirror"; shown in the report
    def run(ctx: RehearsalContext) -> str   # returns a one-line detail; raises to fail the stage

Stages after "deploy" see the stack deployed into moto (ctx.outputs, ctx.physical_ids) and the
stand-ins started (ctx.redis, ctx.hub, ctx.ecr). A stage must not print secrets; it may call
ctx.progress("...") for progress lines. Each capability appends its stage module here.
"""

STAGE_MODULES = [
    "tootstack_dev.rehearsal.deploy",
    "tootstack_dev.rehearsal.edge_cache_stage",
    "tootstack_dev.rehearsal.secrets_stage",
    "tootstack_dev.rehearsal.redis_auth_stage",
    "tootstack_dev.rehearsal.db_setup_stage",
    "tootstack_dev.rehearsal.mirror_stage",
    "tootstack_dev.rehearsal.crashloop_stage",
    "tootstack_dev.rehearsal.admin_stage",
    "tootstack_dev.rehearsal.maintenance_stage",
    "tootstack_dev.rehearsal.upgrade_stage",
    "tootstack_dev.rehearsal.oneoff_stage",
    "tootstack_dev.rehearsal.redeploy_stage",
    "tootstack_dev.rehearsal.iam_stage",  # last: evaluates the AWS calls every stage made
]

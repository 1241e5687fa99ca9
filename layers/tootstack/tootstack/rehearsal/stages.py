"""The rehearsal's lifecycle stages, in the order they run.

A stage module exposes:
    NAME: str                      # e.g. "mirror"; shown in the report
    def run(ctx: RehearsalContext) -> str   # returns a one-line detail; raises to fail the stage

Stages after "deploy" see the stack deployed into moto (ctx.outputs, ctx.physical_ids) and the
stand-ins started (ctx.redis, ctx.hub, ctx.ecr). A stage must not print secrets; it may call
ctx.progress("...") for progress lines. Each capability appends its stage module here.
"""

STAGE_MODULES = [
    "tootstack.rehearsal.deploy",
    "tootstack.rehearsal.edge_cache_stage",
    "tootstack.rehearsal.secrets_stage",
    "tootstack.rehearsal.redis_auth_stage",
    "tootstack.rehearsal.db_setup_stage",
    "tootstack.rehearsal.mirror_stage",
    "tootstack.rehearsal.crashloop_stage",
    "tootstack.rehearsal.admin_stage",
    "tootstack.rehearsal.maintenance_stage",
    "tootstack.rehearsal.upgrade_stage",
    "tootstack.rehearsal.oneoff_stage",
    "tootstack.rehearsal.redeploy_stage",
    "tootstack.rehearsal.iam_stage",  # last: evaluates the AWS calls every stage made
]

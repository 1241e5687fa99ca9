"""The "crashloop" rehearsal stage on the LocalAws harness without a deployed stack: it stands in for
the cluster/table/topic/function and Redis itself and still runs the real detector handler end to end,
against a real redis-server it makes unreachable (SIGSTOP) and brings back."""

from tootstack_dev.local.template import project_root
from tootstack_dev.rehearsal import crashloop_stage
from tootstack_dev.rehearsal.context import RehearsalContext
from tootstack_dev.rehearsal.stages import STAGE_MODULES


def test_stage_is_registered():
    assert "tootstack_dev.rehearsal.crashloop_stage" in STAGE_MODULES
    assert crashloop_stage.NAME == "crashloop"


def test_stage_rolls_back_and_rides_out_a_redis_outage_without_a_resume(local_aws):
    ctx = RehearsalContext(root=project_root(), stack_name="rehearsal", region="us-east-1", parameters={}, progress=lambda _: None)
    ctx.aws = local_aws
    detail = crashloop_stage.run(ctx)
    assert "bad revision rolled back on its 3rd crash" in detail
    assert "Redis unreachable: 4 tasks crashed, alerted on the 3rd (3/3 task ids as evidence)" in detail
    assert "left running at desired count 2; Redis back: 2/2 new tasks serving with no resume" in detail
    assert "2 SNS alerts" in detail and "resume cleared the rollback marker" in detail
    assert "stood in for: cluster, table, topic, task definition, detector function, redis" in detail

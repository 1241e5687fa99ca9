"""The "crashloop" rehearsal stage on the LocalAws harness without a deployed stack: it stands in for
the cluster/table/topic/function itself and still runs the real detector handler end to end."""

from tootstack.local.template import project_root
from tootstack.rehearsal import crashloop_stage
from tootstack.rehearsal.context import RehearsalContext
from tootstack.rehearsal.stages import STAGE_MODULES


def test_stage_is_registered():
    assert "tootstack.rehearsal.crashloop_stage" in STAGE_MODULES
    assert crashloop_stage.NAME == "crashloop"


def test_stage_halts_alerts_and_resumes(local_aws):
    ctx = RehearsalContext(root=project_root(), stack_name="rehearsal", region="us-east-1", parameters={}, progress=lambda _: None)
    ctx.aws = local_aws
    detail = crashloop_stage.run(ctx)
    assert "rolled back on its 3rd crash" in detail and "scaled to 0" in detail
    assert "2 SNS alerts (3/3 task ids" in detail and "restored desired count 2" in detail
    assert "stood in for: cluster, table, topic, task definition, detector function" in detail

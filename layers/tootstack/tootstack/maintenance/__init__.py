"""Scheduled maintenance: the plan a run follows and the gate that skips it.

statemachines/maintenance.asl.json, started daily by an EventBridge Scheduler schedule, asks
functions/maintenance_gate for a plan, then runs each step as a one-off Fargate task of the toolbox
task definition (ecs:runTask.sync) with an explicit exit-code check. See docs/day2.md.
"""

from tootstack.maintenance.plan import (
    MEDIA_DAYS_MIN,
    PREVIEW_CARDS_DAYS_MIN,
    Settings,
    build_plan,
    gate,
)

__all__ = ["MEDIA_DAYS_MIN", "PREVIEW_CARDS_DAYS_MIN", "Settings", "build_plan", "gate"]

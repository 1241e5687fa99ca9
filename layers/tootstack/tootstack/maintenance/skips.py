"""How long maintenance has been skipped: a skip must never be silent.

The gate records, in one SSM parameter ($MAINTENANCE_STATE_PARAMETER, JSON), when a run last went ahead
and since when runs have been skipped, and publishes `tootstack/MaintenanceSkippedSeconds{StackName}`
on every run (0 when it goes ahead). MaintenanceSkippedAlarm alerts the operator topic at a day or more.
"""

from __future__ import annotations

import json
import time
from typing import Any

METRIC_NAMESPACE = "tootstack"
METRIC_NAME = "MaintenanceSkippedSeconds"


def record(ssm: Any, parameter: str, proceed: bool, now: float | None = None) -> int:
    """Record this run's decision; returns the seconds maintenance has been skipped (0 when it runs)."""
    now = int(time.time() if now is None else now)
    try:
        state = json.loads(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
        if not isinstance(state, dict):
            state = {}
    except ssm.exceptions.ParameterNotFound:
        state = {}
    except ValueError:
        state = {}
    if proceed:
        state = {"last_run": now}
        skipped = 0
    else:
        state.setdefault("skipping_since", now)
        skipped = now - int(state["skipping_since"])
    ssm.put_parameter(Name=parameter, Value=json.dumps(state), Type="String", Overwrite=True)
    return skipped


def publish(cloudwatch: Any, stack_name: str, skipped_seconds: int) -> None:
    cloudwatch.put_metric_data(Namespace=METRIC_NAMESPACE, MetricData=[{
        "MetricName": METRIC_NAME, "Dimensions": [{"Name": "StackName", "Value": stack_name}],
        "Value": float(skipped_seconds), "Unit": "Seconds"}])

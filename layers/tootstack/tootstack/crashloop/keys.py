"""How the crashloop pieces name a service: plain string functions, kept apart from the detector so
that `is_halted` (imported by the upgrade, maintenance and Spot fallback Lambdas) does not load the
Parser models on their cold start."""

from __future__ import annotations


def service_key(cluster: str, service: str) -> str:
    return f"{cluster}/{service}"


def cluster_name(cluster_arn_or_name: str) -> str:
    return cluster_arn_or_name.rsplit("/", 1)[-1] if cluster_arn_or_name else ""


def parse_service_arn(service_arn: str, default_cluster: str | None = None) -> tuple[str, str]:
    """(cluster, service) from arn:aws:ecs:R:A:service/CLUSTER/NAME (or the old service/NAME form)."""
    resource = service_arn.split(":", 5)[-1]
    parts = resource.split("/")
    if len(parts) >= 3:
        return parts[1], parts[2]
    return (default_cluster or "default"), parts[-1]

"""Autoscaling helpers (issue 8): Sidekiq queue latency from Redis, and the Spot fallback decision."""

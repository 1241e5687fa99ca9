"""Autoscaling helpers: Sidekiq queue latency from Redis, and the Spot fallback decision."""

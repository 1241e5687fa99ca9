"""Mastodon's secrets: generated once, stored in Secrets Manager, never regenerated (see bootstrap.py)."""

"""tootstack: deploy and run a production Mastodon server on AWS (shared package, shipped as a Lambda layer)."""

__version__ = "0.1.0"

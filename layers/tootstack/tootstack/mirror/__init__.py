"""Registry-to-registry image mirroring over the OCI distribution API (Docker Hub / ghcr.io -> ECR).

    from tootstack.mirror import mirror_image
    result = mirror_image("ghcr.io/mastodon/mastodon:v4.7.4", "123.dkr.ecr.eu-west-1.amazonaws.com/mastodon:v4.7.4",
                          dest_creds=("AWS", token))

Names are imported on first use, so `python -m tootstack_dev.mirror` can set up its process before httpx loads
(and this module imports nothing itself, not even `typing`: the command's warm check needs none of it).
"""

__all__ = ["ImageRef", "MirrorResult", "mirror_image", "parse_ref"]


def __getattr__(name: str) -> object:
    if name in ("MirrorResult", "mirror_image"):
        from tootstack.mirror import copier

        return getattr(copier, name)
    if name in ("ImageRef", "parse_ref"):
        from tootstack.mirror import refs

        return getattr(refs, name)
    raise AttributeError(name)

"""Registry-to-registry image mirroring over the OCI distribution API (Docker Hub / ghcr.io -> ECR).

    from tootstack.mirror import mirror_image
    result = mirror_image("docker.io/tootsuite/mastodon:v4.5.2", "123.dkr.ecr.eu-west-1.amazonaws.com/mastodon:v4.5.2",
                          dest_creds=("AWS", token))
"""

from tootstack.mirror.copier import MirrorResult, mirror_image
from tootstack.mirror.refs import ImageRef, parse_ref

__all__ = ["ImageRef", "MirrorResult", "mirror_image", "parse_ref"]

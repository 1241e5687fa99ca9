"""The account's ECR registry, stood in for by a local registry: moto's ECR names it.

The mirror and the upgrade find their destination the way they do in AWS, from
`ecr:GetAuthorizationToken` (`authorizationData[0].proxyEndpoint` and the Basic credentials of
`authorizationToken`). moto 5.2 answers `https://<account>.dkr.ecr.<region>.amazonaws.com` with the token
`AWS:<account>-auth-token` (moto/ecr/responses.py, `get_authorization_token`), a registry nothing serves.
Inside `ecr_registry(registry)` it answers with the local registry instead: its `http://127.0.0.1:<port>`
endpoint and its credentials. The product code has no switch for this: it speaks to the endpoint ECR
names, with the scheme ECR names (https in AWS).
"""

from __future__ import annotations

import base64
import time
from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def ecr_registry(registry: Any) -> Iterator[None]:
    """While active, moto's GetAuthorizationToken names `registry` (a tootstack_dev.local.registry.Registry,
    or anything with `url`, `username`, `password`) as the account's ECR registry."""
    from moto.core.responses import ActionResult
    from moto.ecr.responses import ECRResponse

    original = ECRResponse.get_authorization_token

    def get_authorization_token(self: Any) -> Any:
        token = base64.b64encode(f"{registry.username or 'AWS'}:{registry.password or ''}".encode()).decode()
        return ActionResult({"authorizationData": [{
            "authorizationToken": token, "expiresAt": time.time() + 12 * 3600, "proxyEndpoint": registry.url}]})

    ECRResponse.get_authorization_token = get_authorization_token
    try:
        yield
    finally:
        ECRResponse.get_authorization_token = original

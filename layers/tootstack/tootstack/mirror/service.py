"""The mirror Lambda's logic: which images go where, ECR credentials, digests into SSM, custom resource replies.

Event shapes (functions/mirror/app.py):
- console / EventBridge Scheduler: {"images": ["ghcr.io/mastodon/mastodon:v4.5.2", ...]} or entries
  {"source": "...", "repository": "mastodon"}; the repository defaults to the last path component of the
  source repository and must be one of the stack's mirror repositories (env REPOSITORIES, JSON
  {"mastodon": "<ecr repository name>", ...}).
- CloudFormation custom resource (Custom::ImageMirror), ResourceProperties
  {"Images": [{"Name": "MastodonImage", "Source": "...", "Repository": "mastodon"}]}: answers Data
  {Name: "<account>.dkr.ecr.<region>.amazonaws.com/<repo>@sha256:..."} for the task definitions.

Each mirrored image's pinned reference is written to SSM parameter PARAMETER_PREFIX/<repository key>.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

from tootstack.errors import InvalidInput
from tootstack.mirror.auth import credentials_for
from tootstack.mirror.copier import mirror_image
from tootstack.mirror.refs import parse_ref

MAX_IMAGES = 10


@dataclass(frozen=True)
class MirrorJob:
    source: str
    key: str            # repository key ("mastodon"), names the SSM parameter
    repository: str     # the ECR repository name
    name: str = ""      # custom resource attribute name (e.g. "MastodonImage")


def repositories_from_env() -> dict[str, str]:
    try:
        value = json.loads(os.environ.get("REPOSITORIES") or "{}")
    except ValueError:
        raise InvalidInput("REPOSITORIES must be a JSON object {key: ECR repository name}") from None
    if not isinstance(value, dict) or not value:
        raise InvalidInput("REPOSITORIES must name at least one ECR repository")
    return {str(k): str(v) for k, v in value.items()}


def parse_jobs(entries: Any, repositories: dict[str, str]) -> list[MirrorJob]:
    """Validate the `images` input completely before anything is copied."""
    if not isinstance(entries, list) or not entries:
        raise InvalidInput('"images" must be a non-empty list of image references or {"source", "repository"} objects')
    if len(entries) > MAX_IMAGES:
        raise InvalidInput(f'"images" holds {len(entries)} entries; at most {MAX_IMAGES} per run')
    jobs = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            source, key, name = entry, None, ""
        elif isinstance(entry, dict):
            source = entry.get("source") or entry.get("Source")
            key = entry.get("repository") or entry.get("Repository")
            name = str(entry.get("name") or entry.get("Name") or "")
            unknown = set(entry) - {"source", "repository", "name", "Source", "Repository", "Name"}
            if unknown:
                raise InvalidInput(f"images[{i}]: unknown keys {sorted(unknown)}")
        else:
            raise InvalidInput(f"images[{i}] must be a string or an object")
        if not isinstance(source, str):
            raise InvalidInput(f"images[{i}]: missing source image reference")
        ref = parse_ref(source)
        key = key or ref.repository.rsplit("/", 1)[-1]
        if key not in repositories:
            raise InvalidInput(f"images[{i}]: repository {key!r} is not one of this stack's mirrors {sorted(repositories)}")
        jobs.append(MirrorJob(source, key, repositories[key], name))
    return jobs


def ecr_endpoint(ecr: Any) -> tuple[str, tuple[str, str], bool]:
    """(registry host, Basic credentials, plain_http) from ecr:GetAuthorizationToken (valid 12 h). The
    registry is reached with the scheme its `proxyEndpoint` names: `https://` in AWS; an endpoint named
    `http://` (a registry emulator's) is reached over plain HTTP, and so are the copy's sources."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    endpoint = data["proxyEndpoint"]
    host = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/")
    return host, (user, password), endpoint.startswith("http://")


def run_jobs(jobs: list[MirrorJob], registry: str, dest_creds: tuple[str, str], ssm: Any, parameter_prefix: str,
             src_creds: Mapping[str, tuple[str, str]] | None = None, plain_http: bool = False) -> list[dict[str, Any]]:
    """`src_creds`: registry host -> (username, password) (auth.parse_source_credentials); each source gets
    only the credentials of its own registry host, anonymous otherwise."""
    if src_creds is not None and not isinstance(src_creds, Mapping):
        raise TypeError("src_creds must map registry hosts to credentials")
    results = []
    mirrored_repos: list[str] = []
    for job in jobs:
        src = parse_ref(job.source)
        tag = src.tag or "latest"
        result = mirror_image(job.source, f"{registry}/{job.repository}:{tag}", src_creds=credentials_for(src.registry, src_creds),
                              dest_creds=dest_creds, plain_http=plain_http, mount_from=tuple(mirrored_repos))
        mirrored_repos.append(job.repository)
        pinned = f"{registry}/{job.repository}@{result.digest}"
        parameter = f"{parameter_prefix.rstrip('/')}/{job.key}"
        ssm.put_parameter(Name=parameter, Value=pinned, Type="String", Overwrite=True,
                          Description=f"{job.source} mirrored into ECR, pinned by digest")
        results.append({
            "source": job.source, "repository": job.repository, "name": job.name, "image": pinned,
            "digest": result.digest, "parameter": parameter, "warm": result.warm,
            "blobs_copied": result.blobs_copied, "blobs_skipped": result.blobs_skipped,
            "bytes_copied": result.bytes_copied,
            "source_requests": {"GET": result.source_requests.get("GET", 0), "HEAD": result.source_requests.get("HEAD", 0)},
        })
    return results

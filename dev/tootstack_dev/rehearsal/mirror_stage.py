"""Rehearsal stage "mirror": images from the "Docker Hub" stand-in into the "ECR" stand-in, pinned by digest.

A small generated multi-arch image for each image the stack runs is pushed into ctx.hub (token auth),
mirrored into ctx.ecr (basic auth, as ECR takes `AWS:<token>`) by the mirror Lambda's own logic
(tootstack.mirror.service: validation, copy, pinned reference into SSM in moto), every digest checked
on the ECR side, then mirrored again: the warm run must reach the source with HEAD requests only.
"""

from __future__ import annotations

import boto3

from tootstack_dev.iam.record import Principal, acting_as

from tootstack.errors import TootstackError
from tootstack_dev.local.images import push_image
from tootstack.mirror.challenge import ACCEPT
from tootstack.mirror.service import parse_jobs, run_jobs

NAME = "mirror"
IMAGES = (("mastodon/mastodon", "mastodon"), ("mastodon/mastodon-streaming", "mastodon-streaming"))
TAG = "v4.5.2"  # the release the rehearsal deploys (samconfig.toml [rehearsal]); the upgrade stage moves it to the default


def function_principal(ctx, logical_id: str) -> Principal | None:
    """The deployed function `logical_id` as a principal (its role), for code a stage runs in its place;
    None when no stack is deployed (the stage on its own, in tests): nothing is recorded then."""
    name = (getattr(ctx, "physical_ids", None) or {}).get(logical_id)
    if not name:
        return None
    role = boto3.client("lambda", region_name=ctx.region).get_function_configuration(FunctionName=name)["Role"]
    return Principal("function", name, role)


def run(ctx) -> str:
    hub, ecr = ctx.hub, ctx.ecr
    src_creds, dest_creds = {hub.host_port: (hub.username, hub.password)}, (ecr.username, ecr.password)
    ssm = boto3.client("ssm", region_name=ctx.region)
    prefix = f"/{ctx.stack_name}/images"
    pushed = {key: push_image(hub, upstream, TAG, [192 * 1024, 16 * 1024]) for upstream, key in IMAGES}
    jobs = parse_jobs([{"source": f"{hub.host_port}/{upstream}:{TAG}", "repository": key} for upstream, key in IMAGES],
                      {key: key for _, key in IMAGES})

    # The mirror library as MirrorFunction runs it, with its role (its AWS calls are checked against it).
    mirror_fn = function_principal(ctx, "MirrorFunction")
    with acting_as(mirror_fn):
        results = run_jobs(jobs, ecr.host_port, dest_creds, ssm, prefix, src_creds=src_creds, plain_http=True)
    blobs = nbytes = 0
    with ecr.client() as client:
        for result, (_, key) in zip(results, IMAGES):
            image = pushed[key]
            if result["digest"] != image.digest:
                raise TootstackError(f"{key}: mirrored digest {result['digest']} != upstream {image.digest}")
            head = client.head(f"/v2/{key}/manifests/{TAG}", headers={"Accept": ACCEPT})
            if head.headers.get("docker-content-digest") != image.digest:
                raise TootstackError(f"{key}:{TAG} in ECR is not {image.digest}")
            for manifest in image.manifests.values():
                if client.head(f"/v2/{key}/manifests/{manifest}", headers={"Accept": ACCEPT}).status_code != 200:
                    raise TootstackError(f"{key}: platform manifest {manifest} missing in ECR")
            recorded = ssm.get_parameter(Name=f"{prefix}/{key}")["Parameter"]["Value"]
            if recorded != f"{ecr.host_port}/{key}@{image.digest}":
                raise TootstackError(f"SSM {prefix}/{key} holds {recorded!r}, not the pinned mirror")
            blobs += result["blobs_copied"] + result["blobs_skipped"]
            nbytes += result["bytes_copied"]

    mark = hub.mark()
    with acting_as(mirror_fn):
        warm = run_jobs(jobs, ecr.host_port, dest_creds, ssm, prefix, src_creds=src_creds, plain_http=True)
    gets = sum(r["source_requests"]["GET"] for r in warm)
    heads = sum(r["source_requests"]["HEAD"] for r in warm)
    if gets or not all(r["warm"] for r in warm):
        raise TootstackError(f"warm mirror made {gets} source GETs")
    served = {method for method, _, _ in hub.requests_since(mark)}
    if served - {"HEAD"}:
        raise TootstackError(f"warm mirror: the source registry served {sorted(served)}, expected HEAD only")
    ctx.mirrored_images = {r["repository"]: r["image"] for r in results}
    return (f"{len(results)} multi-arch images mirrored hub->ecr ({blobs} blobs, {nbytes // 1024} KiB), digests "
            f"verified, pinned refs in SSM {prefix}/*; warm rerun: 0 source GETs, {heads} HEADs")


def stand_in(logical_id: str, resource: dict):
    """Stand-in for Custom::ImageMirror at deploy time (moto does not invoke custom resources): each
    attribute (MastodonImage, StreamingImage) resolves to the source image the resource would mirror,
    so the task definitions keep recognisable image references; this stage then runs the mirror itself."""
    from tootstack_dev.rehearsal.standins import StandIn

    images = (resource.get("Properties") or {}).get("Images") or []
    attributes = {str(i.get("Name")): i.get("Source") for i in images if isinstance(i, dict) and i.get("Name")}
    return StandIn(
        "not invoked by CloudFormation: task definitions get the source images it would mirror; "
        "the rehearsal's mirror stage runs the mirror against the registry stand-ins",
        ref=f"rehearsal-standin-{logical_id}", attributes=attributes,
    )

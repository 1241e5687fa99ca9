"""Rehearsal stage "edge-cache": which of Mastodon's real request paths CloudFront caches.

moto does not serve a distribution, so the stage evaluates the translated template's own distribution
(conditions and parameters applied) the way CloudFront routes a request: the first cache behaviour whose
path pattern matches the path (case-sensitive; `*` any run of characters, `/` included; `?` exactly one;
the query string is not part of the path), else the default behaviour
(https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/DownloadDistValuesCacheBehavior.html#DownloadDistValuesPathPattern).
A behaviour caches when its cache policy allows a TTL above 0; Host reaches an origin when the cache
policy keys on it or the origin request policy forwards it. The report lists cached / not cached per path.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from tootstack_dev.cost.template_eval import ResourceRef, TemplateEvaluator
from tootstack.errors import TootstackError

NAME = "edge-cache"

# AWS managed policies (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/using-managed-cache-policies.html
# and .../using-managed-origin-request-policies.html): id -> (max TTL, headers in the cache key) / Host forwarded.
MANAGED_CACHE_POLICIES = {
    "4135ea2d-6df8-44a3-9df3-4b5a84be39ad": ("CachingDisabled", 0, ()),
    "658327ea-f89d-4fab-a63d-7e88639e58f6": ("CachingOptimized", 31536000, ()),
    "b2884449-e4de-46a7-ac36-70bc7f1ddd6d": ("CachingOptimizedForUncompressedObjects", 31536000, ()),
}
MANAGED_ORIGIN_REQUEST_POLICIES = {
    "216adef6-5c7f-47e4-b989-5492eafa07d3": ("AllViewer", True),
    "33f36d7e-f396-46d9-90e0-52428a34d9dc": ("AllViewerAndCloudFrontHeaders-2022-06", True),
    "b689b0a8-53d0-40ab-baf2-68738e2966ac": ("AllViewerExceptHostHeader", False),
    "88a5eaf4-2fd4-4709-b370-b4c650ea3fcf": ("CORS-S3Origin", False),
    "59781a5b-3903-41f3-afcb-af62929ccde1": ("CORS-CustomOrigin", False),
    "acba4595-bd28-49b8-b9fe-13317c0390fa": ("UserAgentRefererHeaders", False),
}

# What a browser, an app and another server request from a Mastodon 4.5-4.7 server. Static files are
# served from Mastodon's public/ directory (packs: Vite output, vite.config.mts, locale chunks in intl/;
# assets: Propshaft; emoji: Twemoji; sounds: the notification sounds), media from S3 under /system.
MASTODON_REQUESTS: list[tuple[str, str]] = [
    ("/packs/assets/application-DR4MmDT5.js", "web app entry (Vite, fingerprinted)"),
    ("/packs/assets/inter-latin-400-normal-C38fXH4l.woff2", "web font (fingerprinted)"),
    ("/packs/intl/en-B9Q3pWkM.js", "locale chunk (fingerprinted)"),
    ("/assets/logo-symbol-wordmark-1f4c3b2a.svg", "Propshaft asset (fingerprinted)"),
    ("/emoji/1f418.svg", "Twemoji image"),
    ("/emoji/sheet_15_1.png", "emoji sheet"),
    ("/sounds/boop.ogg", "notification sound"),
    ("/sounds/boop.mp3", "notification sound"),
    ("/system/media_attachments/files/113/000/000/original/0a1b2c3d4e5f.png", "uploaded media (S3)"),
    ("/system/accounts/avatars/000/000/001/original/avatar.png", "avatar (S3)"),
    ("/", "landing page"),
    ("/@alice", "profile page"),
    ("/@alice/113000000000000001", "post page"),
    ("/api/v1/timelines/home?limit=20", "REST API, per user"),
    ("/api/v1/accounts/verify_credentials", "REST API, per user"),
    ("/api/v1/streaming?stream=user", "streaming WebSocket"),
    ("/api/v1/streaming/health", "streaming health"),
    ("/inbox", "federation: shared inbox (POST, signed)"),
    ("/users/alice/inbox", "federation: inbox (POST, signed)"),
    ("/users/alice", "federation: actor (signed GET)"),
    ("/.well-known/webfinger?resource=acct:alice@social.example", "federation: WebFinger"),
    ("/.well-known/nodeinfo", "federation: NodeInfo"),
    ("/oauth/token", "OAuth"),
    ("/health", "web health"),
    ("/sw.js", "service worker: must revalidate, never edge-cached"),
    ("/manifest", "PWA manifest"),
    ("/avatars/original/missing.png", "default avatar"),
    ("/packs-old/x.js", "not a /packs/ path"),
]


@dataclass
class PathResult:
    path: str
    what: str
    behaviour: str          # the matching path pattern, or "default"
    origin: str             # the behaviour's TargetOriginId
    cached: bool
    host_forwarded: bool    # Host reaches the origin (needed by the ALB origin: TLS name, Rails host)
    cache_policy: str


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A CloudFront path pattern as a regex: `*` any characters (`/` included), `?` one character, the rest literal."""
    pattern = pattern if pattern.startswith("/") else "/" + pattern
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z", re.S)


def behaviour_for(config: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    """(path pattern or "default", behaviour) CloudFront picks for a request path (query string ignored)."""
    path = path.split("?", 1)[0]
    for behaviour in config.get("CacheBehaviors", []):
        if pattern_regex(behaviour["PathPattern"]).match(path):
            return behaviour["PathPattern"], behaviour
    return "default", config["DefaultCacheBehavior"]


def _policy(resources: dict[str, Any], value: Any, managed: dict[str, Any], rtype: str) -> tuple[str, Any]:
    if isinstance(value, ResourceRef):
        found = resources.get(value.logical_id)
        if not found or found["Type"] != rtype:
            raise TootstackError(f"{value.logical_id} is not a deployed {rtype}")
        return value.logical_id, found["Properties"]
    if value in managed:
        return managed[value][0], managed[value]
    raise TootstackError(f"unknown CloudFront policy id {value!r}")


def cache_facts(resources: dict[str, Any], behaviour: dict[str, Any]) -> tuple[str, bool, bool]:
    """(cache policy name, caches, Host forwarded) of a behaviour."""
    name, policy = _policy(resources, behaviour.get("CachePolicyId"), MANAGED_CACHE_POLICIES, "AWS::CloudFront::CachePolicy")
    if isinstance(policy, tuple):
        max_ttl, keyed = policy[1], policy[2]
    else:
        config = policy["CachePolicyConfig"]
        max_ttl = int(config["MaxTTL"])
        headers = config["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]
        keyed = headers.get("Headers", []) if headers["HeaderBehavior"] == "whitelist" else []
    host = any(h.lower() == "host" for h in keyed)
    if behaviour.get("OriginRequestPolicyId"):
        _, orp = _policy(resources, behaviour["OriginRequestPolicyId"], MANAGED_ORIGIN_REQUEST_POLICIES,
                         "AWS::CloudFront::OriginRequestPolicy")
        if isinstance(orp, tuple):
            host = host or orp[1]
        else:
            headers = orp["OriginRequestPolicyConfig"]["HeadersConfig"]
            host = host or headers["HeaderBehavior"] in ("allViewer", "allViewerAndWhitelistCloudFront") or any(
                h.lower() == "host" for h in headers.get("Headers", []))
    return name, max_ttl > 0, host


def evaluate(resources: dict[str, Any], requests: list[tuple[str, str]] = MASTODON_REQUESTS) -> list[PathResult] | None:
    """Per request path, what the deployed distribution does with it; None without a distribution."""
    distributions = [r for r in resources.values() if r["Type"] == "AWS::CloudFront::Distribution"]
    if not distributions:
        return None
    config = distributions[0]["Properties"]["DistributionConfig"]
    results = []
    for path, what in requests:
        pattern, behaviour = behaviour_for(config, path)
        policy, cached, host = cache_facts(resources, behaviour)
        results.append(PathResult(path, what, pattern, behaviour["TargetOriginId"], cached, host, policy))
    return results


def run(ctx) -> str:
    # The translated template as CloudFormation would get it: moto has no CloudFront VPC origin, so the deployed
    # copy (ctx.cfn_template) holds stand-ins where the distribution's pieces were.
    translated = ctx.translated_template or ctx.cfn_template
    resources = TemplateEvaluator(translated, ctx.parameters, region=ctx.region, stack_name=ctx.stack_name).resources()
    results = evaluate(resources)
    if results is None:
        ctx.edge_cache = []
        return "no CloudFront distribution (UseCloudFront=false): every request reaches the ALB, nothing is cached"
    ctx.edge_cache = [asdict(r) for r in results]
    blind = [r.path for r in results if r.origin == "alb" and not r.host_forwarded]
    if blind:
        raise TootstackError(f"Host does not reach Mastodon for {', '.join(blind)}")
    cached = [r.path for r in results if r.cached]
    passed = [r.path for r in results if not r.cached]
    return (f"{len(cached)} of {len(results)} Mastodon request paths cached at the edge: {', '.join(cached)}; "
            f"not cached: {', '.join(passed)}; Host forwarded on every ALB path")

"""Which of Mastodon's request paths CloudFront caches, from the template's own distribution (the rehearsal's
"edge-cache" stage runs the same evaluation on the translated template and lists the result)."""

import pytest

from tootstack_dev.cost.template_eval import TemplateEvaluator
from tootstack_dev.local.template import load_template, project_root
from tootstack_dev.rehearsal import edge_cache_stage
from tootstack_dev.rehearsal.edge_cache_stage import MASTODON_REQUESTS, behaviour_for, evaluate, pattern_regex
from tootstack_dev.rehearsal.stages import STAGE_MODULES

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
STATIC = ("/packs/", "/assets/", "/emoji/", "/sounds/")


def results(**params):
    return {r.path: r for r in evaluate(TemplateEvaluator(TEMPLATE, {k: str(v) for k, v in params.items()}).resources())}


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("/packs/*", "/packs/assets/app-1.js", True),
    ("/packs/*", "/packs/", True),
    ("/packs/*", "/packs", False),
    ("/packs/*", "/packs-old/x.js", False),
    ("/packs/*", "/Packs/x.js", False),            # case-sensitive
    ("/system/*", "/system/a/b/c.png", True),      # `*` crosses "/"
    ("/emoji/?.svg", "/emoji/1.svg", True),
    ("/emoji/?.svg", "/emoji/12.svg", False),
    ("packs/*", "/packs/x.js", True),              # the leading "/" is optional
    ("/a.b/*", "/aXb/c", False),                    # "." is literal
])
def test_path_patterns_match_as_cloudfront_documents(pattern, path, matches):
    """CloudFront path patterns: case-sensitive, `*` matches any characters, `?` exactly one, "/" optional
    at the start (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/DownloadDistValuesCacheBehavior.html#DownloadDistValuesPathPattern)."""
    assert bool(pattern_regex(pattern).match(path)) is matches


def test_the_query_string_is_not_part_of_the_path():
    config = {"CacheBehaviors": [{"PathPattern": "/api/*"}], "DefaultCacheBehavior": {}}
    assert behaviour_for(config, "/x?next=/api/v1")[0] == "default"
    assert behaviour_for(config, "/api/v1?x=1")[0] == "/api/*"


def test_fingerprinted_static_files_are_cached_and_nothing_per_user_is():
    """Mastodon serves packs, assets, emoji and sounds from public/ with a 28-day public Cache-Control
    (mastodon/mastodon lib/public_file_server_middleware.rb; dist/nginx.conf caches the same directories):
    they must not reach puma on every request. Pages, the API, streaming and federation must never be cached."""
    found = results(Profile="standard")
    for path, r in found.items():
        static = path.startswith(STATIC)
        media = path.startswith("/system/")
        assert r.cached is (static or media), (path, r)
        assert r.origin == ("media" if media else "alb"), (path, r)
    assert {p for p, r in found.items() if r.cached and r.origin == "alb"} == {p for p, _ in MASTODON_REQUESTS if p.startswith(STATIC)}
    assert not found["/sw.js"].cached and not found["/packs-old/x.js"].cached


@pytest.mark.parametrize("profile", ["micro", "standard"])
def test_host_reaches_mastodon_on_every_alb_path(profile):
    """The ALB's certificate matches DomainName, which CloudFront must see in the forwarded Host to validate
    the origin over HTTPS, and Mastodon signs/answers for its own host: a cache policy that keys on Host
    forwards it (https://repost.aws/knowledge-center/configure-cloudfront-to-forward-headers)."""
    for path, r in results(Profile=profile).items():
        if r.origin == "alb":
            assert r.host_forwarded, path


def test_cached_alb_paths_key_on_host_only_and_honour_the_origin():
    resources = TemplateEvaluator(TEMPLATE, {}).resources()
    config = resources["Distribution"]["Properties"]["DistributionConfig"]
    static = [b for b in config["CacheBehaviors"] if b["PathPattern"].startswith(STATIC)]
    assert sorted(b["PathPattern"] for b in static) == sorted(p + "*" for p in STATIC)
    for behaviour in static:
        assert behaviour["AllowedMethods"] == ["GET", "HEAD"] and "OriginRequestPolicyId" not in behaviour
        policy = resources[behaviour["CachePolicyId"].logical_id]["Properties"]["CachePolicyConfig"]
        assert policy["MinTTL"] == 0          # a private or no-store answer (Rails' 404) is never cached
        key = policy["ParametersInCacheKeyAndForwardedToOrigin"]
        assert key["HeadersConfig"] == {"HeaderBehavior": "whitelist", "Headers": ["Host"]}
        assert key["CookiesConfig"]["CookieBehavior"] == "none" and key["QueryStringsConfig"]["QueryStringBehavior"] == "none"


def test_without_cloudfront_nothing_is_cached_at_the_edge():
    assert evaluate(TemplateEvaluator(TEMPLATE, {"UseCloudFront": "false"}).resources()) is None


def test_the_rehearsal_lists_the_paths_after_deploy():
    assert STAGE_MODULES.index("tootstack_dev.rehearsal.edge_cache_stage") == STAGE_MODULES.index("tootstack_dev.rehearsal.deploy") + 1
    assert edge_cache_stage.NAME == "edge-cache"

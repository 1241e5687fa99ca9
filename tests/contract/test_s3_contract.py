"""For every Rails container, the ACL Mastodon sends with an upload is one the media bucket accepts.

moto does not enforce S3 Object Ownership, so this is a documented-fact test. Sources:
- mastodon/mastodon config/initializers/paperclip.rb: `s3_permissions: ENV.fetch('S3_PERMISSION') { 'public-read' }`
  (a missing variable means public-read; any non-empty value is sent as the object's canned ACL, x-amz-acl);
  app/services/suspend_account_service.rb and unsuspend_account_service.rb skip their ACL calls with
  `next if ENV['S3_PERMISSION'] == ''`: the empty string is Mastodon's "ACLs disabled" mode (no ACL sent).
- AWS, "Controlling ownership of objects and disabling ACLs for your bucket"
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html): with
  BucketOwnerEnforced, requests that set an ACL fail with AccessControlListNotSupported, except
  `bucket-owner-full-control` (and no ACL at all).
"""

from __future__ import annotations

import pytest

# one worker deploys the stack once for the whole tier (session fixtures in conftest.py)
pytestmark = pytest.mark.xdist_group("contract")

ACCEPTED_BY_OWNERSHIP = {
    "BucketOwnerEnforced": {None, "bucket-owner-full-control"},
    "BucketOwnerPreferred": None,  # every canned ACL accepted
    "ObjectWriter": None,
}


def mastodon_upload_acl(environment: dict[str, str]) -> str | None:
    """The canned ACL Mastodon sends on upload for this environment (None: no ACL header)."""
    permission = environment.get("S3_PERMISSION", "public-read")
    return permission or None


def bucket_ownership(bucket: dict) -> str:
    rules = (bucket.get("OwnershipControls") or {}).get("Rules") or [{}]
    return rules[0].get("ObjectOwnership", "BucketOwnerEnforced")  # S3's default for new buckets since 2023


def test_every_rails_container_sends_an_acl_the_media_bucket_accepts(stack):
    rails = [c for c in stack.containers if c.environment.get("S3_ENABLED") == "true"]
    assert rails and {c.runtime for c in rails} == {"ruby"}
    # every Rails container (the streaming server never touches S3) has S3 configured
    assert {c.label() for c in rails} == {c.label() for c in stack.containers if c.runtime == "ruby"}
    media = stack.buckets["MediaBucket"]
    ownership = bucket_ownership(media)
    assert ownership == "BucketOwnerEnforced"
    for c in rails:
        acl = mastodon_upload_acl(c.environment)
        accepted = ACCEPTED_BY_OWNERSHIP[ownership]
        assert accepted is None or acl in accepted, f"{c.label()}: Mastodon would send x-amz-acl={acl!r}"


def test_the_fact_model_refuses_the_old_setting():
    """The old S3_PERMISSION=private (and Mastodon's default public-read) would be refused by the bucket."""
    for environment in ({"S3_PERMISSION": "private"}, {}):
        assert mastodon_upload_acl(environment) not in ACCEPTED_BY_OWNERSHIP["BucketOwnerEnforced"]

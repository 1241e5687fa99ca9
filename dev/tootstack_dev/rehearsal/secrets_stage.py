"""Rehearsal stage "secrets": the deployed SecretsBootstrapFunction fills the stack's secrets, once.

Invoked through the Lambda API ({"Action": "bootstrap"}, as first boot does; CloudFormation's custom
resource call is covered by the tests). Checks: every key Mastodon needs is there, the VAPID pair is a
P-256 pair in Mastodon's encoding, the SMTP login is an access key of the stack's SMTP IAM user, and a
second run generates nothing and changes no value.
"""

from __future__ import annotations

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.rehearsal.first_boot_stage import SECRET_IDS, read_secret
from tootstack.secrets.generate import APP_SECRET_KEYS, check_vapid_pair

NAME = "secrets"


def run(ctx) -> str:
    function = ctx.physical("SecretsBootstrapFunction")
    first = ctx.aws.invoke(function, {"Action": "bootstrap"})
    documents = {lid: read_secret(ctx, lid) for lid in SECRET_IDS}
    app = documents["AppSecrets"]
    missing = [k for k in APP_SECRET_KEYS if not app.get(k)]
    if missing:
        raise TootstackError(f"AppSecrets lacks {missing}")
    check_vapid_pair(app["VAPID_PRIVATE_KEY"], app["VAPID_PUBLIC_KEY"])
    for lid in SECRET_IDS[1:]:  # the three credential secrets (AppSecrets is checked above)
        if not documents[lid].get("username") or not documents[lid].get("password"):
            raise TootstackError(f"{lid} has no username/password")
    iam = boto3.client("iam", region_name=ctx.region)
    keys = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=ctx.physical("SmtpUser"))["AccessKeyMetadata"]]
    if keys != [documents["SmtpSecret"]["username"]]:
        raise TootstackError("the SMTP login is not the SMTP user's only access key")
    second = ctx.aws.invoke(function, {"Action": "bootstrap"})
    if second.get("Generated") != "none" or {lid: read_secret(ctx, lid) for lid in documents} != documents:
        raise TootstackError("a second bootstrap changed secrets")
    generated = first.get("Generated", "none")
    count = 0 if generated == "none" else len(generated.split(","))
    return (f"{count} keys generated into 4 secrets (kept {first.get('Kept')} existing), VAPID P-256 pair verified, "
            "SMTP password derived from the SMTP user's access key; re-run generated none and changed nothing")

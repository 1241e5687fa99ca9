"""Rehearsal stage "redis-auth": first-boot Redis auth setup, then one full rotation, on the real
redis-server with TLS that stands in for ElastiCache.

The deployed RedisRotationFunction runs with the ACL backend here (see first_boot_stage); Secrets
Manager's RotateSecret (moto) drives createSecret -> setSecret -> testSecret -> finishSecret through
the Lambda API. Checks with real AUTH + PING over TLS: the open default user is closed, the mastodon
user works with AWSCURRENT, after the rotation the new password works and the old one is refused.
"""

from __future__ import annotations

import uuid

import boto3

from tootstack.errors import TootstackError
from tootstack_dev.rehearsal.first_boot_stage import endpoint, mastodon_connects, read_secret, route_redis_functions

NAME = "redis-auth"


def run(ctx) -> str:
    rotation_fn = route_redis_functions(ctx)
    anonymous = endpoint(ctx).client()
    try:
        open_before = anonymous.ping() is True
    except Exception:  # refused is the expected answer after setup
        open_before = False
    finally:
        anonymous.close()
    setup = ctx.aws.invoke(rotation_fn, {"Action": "setup"})
    before = read_secret(ctx, "RedisSecret")
    if not mastodon_connects(ctx, before["username"], before["password"]):
        raise TootstackError("the mastodon user cannot AUTH with AWSCURRENT after setup")
    anonymous = endpoint(ctx).client()
    try:
        anonymous.ping()
        raise TootstackError("Redis still answers without AUTH after setup")
    except TootstackError:
        raise
    except Exception:  # NOAUTH/AuthenticationError: closed, as wanted
        pass
    finally:
        anonymous.close()

    sm = boto3.client("secretsmanager", region_name=ctx.region)
    lambda_arn = boto3.client("lambda", region_name=ctx.region).get_function(FunctionName=rotation_fn)["Configuration"]["FunctionArn"]
    token = str(uuid.uuid4())
    sm.rotate_secret(SecretId=ctx.physical("RedisSecret"), ClientRequestToken=token, RotationLambdaARN=lambda_arn,
                     RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=True)
    after = read_secret(ctx, "RedisSecret")
    stages = sm.describe_secret(SecretId=ctx.physical("RedisSecret"))["VersionIdsToStages"]
    if "AWSCURRENT" not in stages.get(token, []) or any("AWSPENDING" in s for s in stages.values()):
        raise TootstackError(f"rotation did not finish: version stages {stages}")
    if after["password"] == before["password"]:
        raise TootstackError("rotation kept the old password")
    if not mastodon_connects(ctx, after["username"], after["password"]):
        raise TootstackError("the rotated AWSCURRENT password is refused")
    if mastodon_connects(ctx, before["username"], before["password"]):
        raise TootstackError("the old password still works after finishSecret")
    return (f"setup: {setup.get('status')} (open default user {'closed' if open_before else 'was already closed'}); "
            f"rotation via RotateSecret: new password AUTHs over TLS, old one refused, AWSPENDING cleared")

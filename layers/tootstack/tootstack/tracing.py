"""Which libraries a handler's X-Ray tracer patches: the clients that handler calls, nothing else.

`Tracer()` without `patch_modules` patches every library the X-Ray SDK supports
(`aws_xray_sdk.core.patcher.SUPPORTED_MODULES`: botocore, httpx, requests, sqlite3, database drivers ...),
which imports each one that is installed at cold start, whether the handler uses it or not (measured:
httpx with its command line, requests and charset_normalizer, ~0.1 s per cold start). The handlers pass
one of these tuples instead (Powertools `Tracer(patch_modules=...)`, same subsegments for the calls
they make):

- AWS: boto3/botocore calls (every handler).
- AWS_AND_CLOUDFORMATION: plus `http.client` (`httplib`), which urllib uses for the custom-resource
  answer PUT to CloudFormation's pre-signed URL (tootstack.cfn_custom).
- REGISTRY: plus httpx, the mirror's registry client (`Tracer.patch(REGISTRY_CLIENT)` where it is
  first used, in handlers that mirror only in one of their steps).
"""

AWS = ("botocore",)
AWS_AND_CLOUDFORMATION = ("botocore", "httplib")
REGISTRY_CLIENT = ("httpx",)
REGISTRY = AWS_AND_CLOUDFORMATION + REGISTRY_CLIENT

"""Offline `sam package` + SAM transform: template.yaml -> plain CloudFormation for moto.

The SAM translator only accepts S3 URIs for code, so local CodeUri/ContentUri directories are zipped
into an S3 bucket (moto's, during a rehearsal) exactly as `sam package` would upload them, and local
state machine files are inlined as `Definition` (DefinitionSubstitutions still apply).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from tootstack.errors import InvalidInput

# Which property of which SAM type points at local files.
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


def zip_directory(directory: Path) -> bytes:
    """Zip a directory's files (deterministic order, no caches)."""
    if not directory.is_dir():
        raise InvalidInput(f"code directory not found: {directory}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.getvalue()


def package(template: dict[str, Any], root: Path, s3_client: Any, bucket: str) -> dict[str, Any]:
    """Return a copy of `template` with local code uploaded to `bucket` and state machines inlined."""
    packaged = copy.deepcopy(template)
    uploaded: dict[Path, str] = {}
    global_code = packaged.get("Globals", {}).get("Function", {}).get("CodeUri")
    for logical_id, resource in packaged.get("Resources", {}).items():
        rtype = resource.get("Type")
        props = resource.setdefault("Properties", {})
        prop = _CODE_PROPERTIES.get(rtype)
        if prop:
            local = props.get(prop, global_code if rtype == "AWS::Serverless::Function" else None)
            if isinstance(local, str) and not local.startswith("s3://"):
                directory = (root / local).resolve()
                if directory not in uploaded:
                    key = f"rehearsal/{logical_id}.zip"
                    s3_client.put_object(Bucket=bucket, Key=key, Body=zip_directory(directory))
                    uploaded[directory] = f"s3://{bucket}/{key}"
                props[prop] = uploaded[directory]
        if rtype == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            path = root / props.pop("DefinitionUri")
            props["Definition"] = load_definition(path)
    return packaged


def load_definition(path: Path) -> dict[str, Any]:
    """Read an ASL file (JSON, or YAML for *.yaml/*.yml)."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise InvalidInput(f"state machine definition not found: {path}") from exc
    if path.suffix in (".yaml", ".yml"):
        from samcli.yamlhelper import yaml_parse

        return yaml_parse(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc


class _BundledPolicies:
    """ManagedPolicyLoader stand-in: the AWS managed policy ARNs bundled with the translator (no IAM call)."""

    def __init__(self) -> None:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

        self._map = get_bundled_managed_policy_map("aws")

    def load(self) -> dict[str, str]:
        return self._map


def sam_transform(packaged: dict[str, Any], region: str, account_id: str) -> dict[str, Any]:
    """Run the AWS SAM transform offline (what CloudFormation does with AWS::Serverless-2016-10-31)."""
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    parameters = {"AWS::Region": region, "AWS::AccountId": account_id, "AWS::Partition": "aws"}
    policies = _BundledPolicies()
    # The session only supplies the region for pseudo parameters: no AWS call is made.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        return translator.translate(
            copy.deepcopy(packaged), parameter_values=parameters, get_managed_policy_map=policies.load
        )
    except InvalidDocumentException as exc:
        reasons = "; ".join(str(cause) for cause in exc.causes)
        raise InvalidInput(f"SAM transform failed: {reasons}") from exc
    finally:
        # The translator records timing metrics into a dummy publisher; left unpublished, it warns on stderr
        # when it is collected (a second translation in the same process, e.g. the redeploy stage).
        translator.metrics.publish()

"""The rehearsal's packaging and SAM transform against moto's S3 (code zipped and uploaded as `sam package`
would), and stand-in substitution, which asks moto's CloudFormation which types it models. The pure pieces
(transform errors, definition substitutions) are in tests/unit/test_rehearsal_units.py."""

import io
import json
import zipfile

import boto3
import pytest
from moto import mock_aws

from tests.unit.test_rehearsal_units import _template
from tootstack.errors import InvalidInput
from tootstack_dev.rehearsal.standins import StandIn, moto_models, substitute
from tootstack_dev.rehearsal.translate import package, sam_transform


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="art")
        yield client


def test_package_uploads_code_and_inlines_definitions(s3, tmp_path):
    from tootstack_dev.local.template import project_root

    root = project_root()
    packaged = package(_template(), root, s3, "art")
    code_uri = packaged["Resources"]["Fn"]["Properties"]["CodeUri"]
    assert code_uri.startswith("s3://art/")
    body = s3.get_object(Bucket="art", Key=code_uri.split("/", 3)[3])["Body"].read()
    assert "app.py" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    machine = packaged["Resources"]["Machine"]["Properties"]
    assert "DefinitionUri" not in machine
    assert machine["Definition"] == json.loads((root / "tests/data/tiny.asl.json").read_text())


def test_package_names_a_missing_directory(s3, tmp_path):
    template = _template()
    template["Resources"]["Fn"]["Properties"]["CodeUri"] = "functions/does-not-exist/"
    with pytest.raises(InvalidInput, match="does-not-exist"):
        package(template, tmp_path, s3, "art")


def test_sam_transform_yields_plain_cloudformation(s3):
    from tootstack_dev.local.template import project_root

    packaged = package(_template(), project_root(), s3, "art")
    cfn = sam_transform(packaged, "us-east-1", "123456789012")
    types = {r["Type"] for r in cfn["Resources"].values()}
    assert "AWS::Lambda::Function" in types and "AWS::StepFunctions::StateMachine" in types
    assert not any(t.startswith("AWS::Serverless::") for t in types)


def test_substitute_replaces_references_to_skipped_resources():
    template = {
        "Resources": {
            "Cache": {"Type": "AWS::ElastiCache::ReplicationGroup", "Properties": {}},
            "Sched": {"Type": "AWS::Scheduler::Schedule", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "DependsOn": ["Cache", "Sched"],
                      "Properties": {"QueueName": {"Fn::Sub": "q-${Cache.PrimaryEndPoint.Port}-${AWS::Region}"},
                                     "Tags": [{"Key": "h", "Value": {"Fn::GetAtt": ["Cache", "PrimaryEndPoint.Address"]}},
                                              {"Key": "s", "Value": {"Ref": "Sched"}}]}},
        },
        "Outputs": {"Host": {"Value": {"Fn::GetAtt": "Cache.PrimaryEndPoint.Address"}}},
    }
    factories = {"AWS::ElastiCache::ReplicationGroup": lambda lid, resource: StandIn(
        "real redis", "cache", {"PrimaryEndPoint.Address": "127.0.0.1", "PrimaryEndPoint.Port": "6390"})}
    result, skipped = substitute(template, factories)
    assert set(result["Resources"]) == {"Queue"}
    queue = result["Resources"]["Queue"]
    assert queue["DependsOn"] == []
    assert queue["Properties"]["QueueName"] == {"Fn::Sub": "q-6390-${AWS::Region}"}
    assert queue["Properties"]["Tags"][0]["Value"] == "127.0.0.1"
    assert queue["Properties"]["Tags"][1]["Value"] == "rehearsal-standin-Sched"
    assert result["Outputs"]["Host"]["Value"] == "127.0.0.1"
    assert {s["logical_id"]: s["stand_in"] for s in skipped}["Cache"] == "real redis"
    assert "not scheduled" in {s["logical_id"]: s["stand_in"] for s in skipped}["Sched"]


def test_moto_models_knows_what_it_creates():
    assert moto_models("AWS::SQS::Queue")
    assert not moto_models("AWS::ElastiCache::ReplicationGroup")
    assert not moto_models("Custom::SecretsBootstrap")

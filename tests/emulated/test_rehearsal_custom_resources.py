"""The rehearsal's custom-resource requests (tootstack_dev.rehearsal.custom_resources): the request
CloudFormation sends (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requests.html)
goes through the Lambda API to the function the ServiceToken names, and the answer is read from the
ResponseURL, FAILED as an error with its reason."""

import json
from types import SimpleNamespace

import boto3
import pytest

from tootstack.cfn_custom import FAILED, SUCCESS, respond
from tootstack_dev.rehearsal.custom_resources import CloudFormationRequests, CustomResourceFailed, resolved_properties

REGION = "us-east-1"


@pytest.fixture
def stack_with_function(local_aws):
    seen = []

    def handler(event, context):
        seen.append(event)
        props = event["ResourceProperties"]
        if props.get("Refuse"):
            return respond(event, context, FAILED, reason=f"refused: {props['Refuse']}", no_echo=False)
        return respond(event, context, SUCCESS, data={"Echo": props["Value"]}, no_echo=False)

    arn = local_aws.create_function("guard", handler)
    boto3.client("cloudformation", region_name=REGION).create_stack(StackName="s", TemplateBody=json.dumps(
        {"Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}))
    ctx = SimpleNamespace(region=REGION, stack_name="s", aws=local_aws, physical={"GuardFunction": "guard"}.__getitem__)
    return ctx, arn, seen


RESOURCE = {"Type": "Custom::Thing", "Properties": {"ServiceToken": {"Fn::GetAtt": ["GuardFunction", "Arn"]}}}


def test_a_request_reaches_the_function_and_its_answer_is_read(stack_with_function):
    ctx, arn, seen = stack_with_function
    with CloudFormationRequests(ctx) as cloudformation:
        data = cloudformation.request("Thing", RESOURCE, {"Value": "1"}, "Update", {"Value": "0"})
    assert data == {"Echo": "1"}
    (event,) = seen
    assert event["RequestType"] == "Update" and event["ResourceType"] == "Custom::Thing"
    assert event["ServiceToken"] == arn and event["ResourceProperties"] == {"ServiceToken": arn, "Value": "1"}
    assert event["OldResourceProperties"]["Value"] == "0" and event["StackId"].startswith("arn:aws:cloudformation:")


def test_a_failed_answer_is_an_error_with_its_reason(stack_with_function):
    ctx, _, _ = stack_with_function
    with CloudFormationRequests(ctx) as cloudformation, pytest.raises(CustomResourceFailed, match="refused: no"):
        cloudformation.request("Thing", RESOURCE, {"Refuse": "no"})


def test_properties_resolve_as_cloudformation_resolves_them():
    template = {"Parameters": {"Image": {"Type": "String", "Default": "a:1"}, "On": {"Type": "String", "Default": "yes"}},
                "Conditions": {"IsOn": {"Fn::Equals": [{"Ref": "On"}, "yes"]}},
                "Resources": {"Thing": {"Type": "Custom::Thing", "Properties": {
                    "ServiceToken": {"Fn::GetAtt": ["Fn", "Arn"]}, "Cluster": {"Ref": "Cluster"},
                    "Parameter": {"Fn::Sub": "/${AWS::StackName}/version"}, "Image": {"Ref": "Image"},
                    "Maybe": {"Fn::If": ["IsOn", "on", "off"]}, "Token": {"Fn::GetAtt": ["Bridge", "Bridged"]}}},
                              "Cluster": {"Type": "AWS::ECS::Cluster"}, "Fn": {"Type": "AWS::Lambda::Function"},
                              "Bridge": {"Type": "Custom::CoreBridge"}}}
    props = resolved_properties(template, {"Image": "b:2"}, REGION, "st", "Thing", {"Cluster": "c-1"}.get,
                                lambda lid, attr: f"{lid}.{attr}")
    assert props == {"Cluster": "c-1", "Parameter": "/st/version", "Image": "b:2", "Maybe": "on", "Token": "Bridge.Bridged"}

"""Units of the rehearsal's deploy path: SAM transform errors, definition substitutions (packaging and the
transform against moto's S3, and stand-in substitution, which asks moto's CloudFormation what it models, are in
tests/emulated/test_rehearsal_translate.py)."""

import pytest

from tootstack.errors import InvalidInput
from tootstack_dev.rehearsal.translate import sam_transform


def _template():
    return {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Fn": {"Type": "AWS::Serverless::Function",
                   "Properties": {"CodeUri": "functions/preflight/", "Handler": "app.handler", "Runtime": "python3.11"}},
            "Machine": {"Type": "AWS::Serverless::StateMachine",
                        "Properties": {"DefinitionUri": "tests/data/tiny.asl.json",
                                       "DefinitionSubstitutions": {"Value": "x"}}},
        },
    }


def test_sam_transform_reports_invalid_documents():
    bad = {"Transform": "AWS::Serverless-2016-10-31",
           "Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Handler": "app.handler"}}}}
    with pytest.raises(InvalidInput, match="SAM transform failed"):
        sam_transform(bad, "us-east-1", "123456789012")


def test_definition_substitutions_are_applied_as_cloudformation_does():
    from tootstack_dev.rehearsal.deploy import apply_definition_substitutions

    template = {"Resources": {
        "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "DefinitionString": {"Fn::Join": ["\n", ['{"Resource": "${Fn}",', '"Comment": "${NotASubstitution}"}']]},
            "DefinitionSubstitutions": {"Fn": {"Fn::GetAtt": ["Function", "Arn"]}},
        }},
        "Plain": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"DefinitionString": "{}"}},
    }}
    assert apply_definition_substitutions(template) == 1
    props = template["Resources"]["Machine"]["Properties"]
    assert "DefinitionSubstitutions" not in props
    assert props["DefinitionString"] == {"Fn::Join": ["", [
        '{"Resource": "', {"Fn::GetAtt": ["Function", "Arn"]}, '",\n"Comment": "', "${NotASubstitution}", '"}',
    ]]}
    assert template["Resources"]["Plain"]["Properties"] == {"DefinitionString": "{}"}

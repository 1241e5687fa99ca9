"""Composition of template.yaml with its local parts (tootstack_dev.local.compose), and the Mastodon task
written once.

Nested-stack semantics the composition keeps: a part's parameters are strings given by the instance or
the part's default, AllowedValues are enforced, a part's AWS::StackName is the nested stack's own name
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/pseudo-parameter-reference.html#cfn-pseudo-param-stackname),
and the root reads a part only through `!GetAtt <Instance>.Outputs.<Name>`
(https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-cloudformation-stack.html#aws-resource-cloudformation-stack-return-values).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tootstack.errors import InvalidInput
from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()

PART = """
Parameters:
  Role: {Type: String, AllowedValues: [a, b]}
  Name: {Type: String}
  Words: {Type: String, Default: "x|y z"}
Conditions:
  IsA: !Equals [!Ref Role, a]
  Flag: !Equals [!Ref Name, "on"]
Resources:
  Thing:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub ${Name}-${Role}
      Tags: !If [IsA, [{Key: k, Value: !Split ["|", !Ref Words]}], !Ref AWS::NoValue]
      DisplayName: !If [Flag, "up", "down"]
  Other:
    Type: AWS::SQS::Queue
    DependsOn: Thing
    Condition: IsA
Outputs:
  Arn: {Value: !Ref Thing}
"""


def _compose(tmp_path: Path, params: dict, part: str = PART, extra: str = "") -> dict:
    (tmp_path / "parts").mkdir(exist_ok=True)
    (tmp_path / "parts/part.yaml").write_text(part)
    root = {"Parameters": {"P": {"Type": "String"}},
            "Resources": {"One": {"Type": "AWS::Serverless::Application",
                                  "Properties": {"Location": "parts/part.yaml", "Parameters": params}},
                          "User": {"Type": "AWS::SNS::Subscription", "DependsOn": "One",
                                   "Properties": {"TopicArn": {"Fn::GetAtt": ["One", "Outputs.Arn"]}}}}}
    (tmp_path / "template.yaml").write_text(yaml.safe_dump(root) + extra)
    return load_template(tmp_path / "template.yaml")



def test_a_part_is_renamed_its_parameters_substituted_and_its_literal_conditions_folded(tmp_path):
    composed = _compose(tmp_path, {"Role": "a", "Name": {"Ref": "P"}})
    resources = composed["Resources"]
    assert set(resources) == {"OneThing", "OneOther", "User"}
    thing = resources["OneThing"]["Properties"]
    assert thing["TopicName"] == {"Fn::Sub": "${P}-a"}
    assert thing["Tags"] == [{"Key": "k", "Value": ["x", "y z"]}]          # Role=a decided IsA; Split folded
    assert thing["DisplayName"] == {"Fn::If": ["OneFlag", "up", "down"]}    # depends on a root parameter: kept
    assert composed["Conditions"] == {"OneFlag": {"Fn::Equals": [{"Ref": "P"}, "on"]}}
    assert resources["OneOther"]["DependsOn"] == ["OneThing"] and "Condition" not in resources["OneOther"]
    assert resources["User"]["Properties"]["TopicArn"] == {"Ref": "OneThing"}
    assert resources["User"]["DependsOn"] == ["OneThing", "OneOther"]
    assert composed["Metadata"]["tootstack:composed"] == {"One": {"Location": "parts/part.yaml",
                                                                  "Resources": ["OneThing", "OneOther"]}}


def test_a_false_literal_condition_drops_the_resource_and_the_property(tmp_path):
    resources = _compose(tmp_path, {"Role": "b", "Name": "n"})["Resources"]
    assert "OneOther" not in resources and "Tags" not in resources["OneThing"]["Properties"]
    assert resources["OneThing"]["Properties"]["TopicName"] == {"Fn::Sub": "n-b"}


@pytest.mark.parametrize("params, message", [
    ({"Role": "c", "Name": "n"}, "is not one of"),
    ({"Role": "a"}, "has no value and no default"),
    ({"Role": "a", "Name": "n", "Typo": "x"}, "declares no parameter Typo"),
])
def test_what_cloudformation_refuses_for_a_nested_stack_is_refused(tmp_path, params, message):
    with pytest.raises(InvalidInput, match=message):
        _compose(tmp_path, params)


def test_a_part_reading_aws_stackname_is_refused(tmp_path):
    part = PART.replace("!Sub ${Name}-${Role}", "!Sub ${AWS::StackName}-${Role}")
    with pytest.raises(InvalidInput, match="AWS::StackName"):
        _compose(tmp_path, {"Role": "a", "Name": "n"}, part=part)


def test_a_section_of_the_root_keeps_its_logical_ids(tmp_path):
    part = "Metadata: {tootstack:compose: {KeepLogicalIds: true}}\n" + PART
    resources = _compose(tmp_path, {"Role": "a", "Name": "n"}, part=part)["Resources"]
    assert {"Thing", "Other", "User"} == set(resources) and resources["Other"]["DependsOn"] == ["Thing"]
    assert resources["User"]["Properties"]["TopicArn"] == {"Ref": "Thing"}


def test_compose_false_reads_the_root_alone(tmp_path):
    _compose(tmp_path, {"Role": "a", "Name": "n"})
    assert set(load_template(tmp_path / "template.yaml", compose=False)["Resources"]) == {"One", "User"}


# --- the Mastodon task, once ---------------------------------------------------------------------------

TEMPLATE_FILES = [ROOT / "template.yaml", *sorted((ROOT / "templates").glob("*.yaml"))]
# The streaming server (node) is another program: its own, smaller environment (no S3/SMTP, no
# application secret) repeats these connection names with its own list.
STREAMING_ENV = {"LOCAL_DOMAIN", "WEB_DOMAIN", "RAILS_ENV", "NODE_ENV", "RAILS_LOG_TO_STDOUT", "DB_HOST", "DB_PORT",
                 "DB_NAME", "DB_USER", "DB_SSLMODE", "RDS_CA_PEM", "REDIS_HOST", "REDIS_PORT", "BIND", "PORT",
                 "DB_POOL", "DB_PASS", "REDIS_USER", "REDIS_PASSWORD"}


def test_each_mastodon_variable_secret_and_the_entry_point_are_written_in_one_place():
    """Counted in the files as written: the composed template has eight containers, the files one Rails
    environment, one list of Rails secrets and one entry point (the core sidekiq container aliases them)."""
    composed = load_template(ROOT / "template.yaml")["Resources"]
    containers = [c for r in composed.values() if r["Type"] == "AWS::ECS::TaskDefinition"
                  for c in r["Properties"]["ContainerDefinitions"]]
    assert len(containers) == 8
    names = {e["Name"] for c in containers for e in c.get("Environment", []) + c.get("Secrets", [])}
    text = "\n".join(p.read_text() for p in TEMPLATE_FILES)
    for name in names:
        written = len(re.findall(rf"\bName: {name}\b", text))   # block (- Name: X) and flow ({Name: X, ...}) style
        assert written == (2 if name in STREAMING_ENV else 1), name
    assert text.count("exec \"$@\"") == 1 and text.count("ContainerDefinitions:") == 1
    assert "ContainerDefinitions" not in (ROOT / "template.yaml").read_text()


def test_control_a_pasted_container_is_counted():
    text = (ROOT / "templates/mastodon-task.yaml").read_text()
    pasted = text + text[text.index("          Environment: &RAILS_ENVIRONMENT"):text.index("          Secrets: &RAILS_SECRETS")]
    assert len(re.findall(r"\bName: S3_BUCKET\b", pasted)) == 2


def test_every_part_takes_at_most_60_parameters():
    """"The maximum number of parameters that a nested application can have is 60"
    (https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/serverless-sam-template-nested-applications.html)."""
    counts = {p.name: len(load_template(p, compose=False).get("Parameters", {})) for p in TEMPLATE_FILES[1:]}
    assert counts and max(counts.values()) <= 60, counts


def test_every_part_fits_in_1500_lines():
    assert {p.name: len(p.read_text().splitlines()) <= 1500 for p in TEMPLATE_FILES[1:]} == {p.name: True for p in TEMPLATE_FILES[1:]}


def test_sam_package_writes_the_task_module_without_aliases():
    """What `sam package`/`sam deploy` upload is written by samcli.yamlhelper.yaml_dump, whose CfnDumper
    ignores aliases (samcli/yamlhelper.py): CloudFormation, which refuses YAML aliases, gets every alias
    of the part expanded, and the expansion reads back as the same template."""
    from samcli.yamlhelper import yaml_dump, yaml_parse

    text = (ROOT / "templates/mastodon-task.yaml").read_text()
    assert "*RAILS_ENVIRONMENT" in text   # the part does use aliases
    packaged = yaml_dump(yaml_parse(text))
    assert not re.search(r"(^|\s)[&*]id\d+", packaged) and "RAILS_ENVIRONMENT" not in packaged
    assert yaml_parse(packaged) == yaml_parse(text)
    assert packaged.count('exec "$@"') == 3   # the entry point in each of core's three containers


def test_every_root_parameter_is_in_exactly_one_interface_group():
    """AWS::CloudFormation::Interface ParameterGroups (the console's order for the root's parameters):
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-cloudformation-interface.html"""
    root = load_template(ROOT / "template.yaml", compose=False)
    grouped = [p for group in root["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
               for p in group["Parameters"]]
    assert sorted(grouped) == sorted(root["Parameters"])

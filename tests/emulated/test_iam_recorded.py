"""The least-privilege check end to end in moto: a small stack deployed in moto's CloudFormation, calls recorded
as its role (the recorder on, as in the rehearsal), then evaluated, with controls (a call outside its role's
policy must be reported). The policy evaluator's own tests are in tests/unit/test_iam_policy.py."""

import json

from tootstack_dev.iam.check import check_calls
from tootstack_dev.iam.record import Principal, acting_as

ACCOUNT = "123456789012"


POLICY_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Resources": {
        "FnRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
            "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Sid": "ReadApp", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "SECRET_ARN"},
                {"Sid": "Params", "Effect": "Allow", "Action": "ssm:GetParameter",
                 "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/ctl/images/*"},
            ]}}],
        }},
    },
}


def _deploy_and_call(local_aws, template, calls):
    """Deploy `template` in moto, then make `calls` as FnRole (the recorder on, as in the rehearsal)."""
    secret_arn = local_aws.client("secretsmanager").create_secret(Name="ctl/app", SecretString="{}")["ARN"]
    cfn = local_aws.client("cloudformation")
    body = json.dumps(template).replace("SECRET_ARN", secret_arn)
    cfn.create_stack(StackName="ctl", TemplateBody=body, Capabilities=["CAPABILITY_IAM"])
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in cfn.list_stack_resources(StackName="ctl")["StackResourceSummaries"]}
    role_arn = local_aws.client("iam").get_role(RoleName=resources["FnRole"])["Role"]["Arn"]
    local_aws.client("ssm").put_parameter(Name="/ctl/images/mastodon", Value="x", Type="String")
    local_aws.client("ssm").put_parameter(Name="/ctl/other", Value="x", Type="String")
    sm, ssm = local_aws.client("secretsmanager"), local_aws.client("ssm")
    with acting_as(Principal("function", "ctl-fn", role_arn)):
        for call in calls:
            call(sm, ssm)
    return check_calls(local_aws.iam_calls.calls, "us-east-1", ACCOUNT, "ctl", template, lambda family, which: None, template)


def test_recorded_calls_inside_the_policy_pass_and_the_unused_statement_is_listed(local_aws):
    report = _deploy_and_call(local_aws, POLICY_TEMPLATE, [lambda sm, ssm: sm.get_secret_value(SecretId="ctl/app")])
    assert report.unallowed == []
    assert [(c["role"], c["action"]) for c in report.distinct_calls] == [("FnRole", "secretsmanager:GetSecretValue")]
    assert [u["statement"] for u in report.unused] == ["FnRole/inline#Params"]
    assert report.unused[0]["justification"] is None


def test_a_fabricated_call_outside_the_policy_is_reported(local_aws):
    """Control: the same role reading a parameter outside its grant."""
    report = _deploy_and_call(local_aws, POLICY_TEMPLATE, [
        lambda sm, ssm: ssm.get_parameter(Name="/ctl/images/mastodon"),
        lambda sm, ssm: ssm.get_parameter(Name="/ctl/other"),
    ])
    assert [(u["role"], u["action"], u["resource"]) for u in report.unallowed] == [
        ("FnRole", "ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/ctl/other")]


def test_a_statement_narrowed_in_a_copy_of_the_template_reports_the_call_it_no_longer_allows(local_aws):
    """Control: narrow ReadApp to another secret; the call that passed before is now reported."""
    narrowed = json.loads(json.dumps(POLICY_TEMPLATE))
    statement = narrowed["Resources"]["FnRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    statement["Resource"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ctl/admin/*"
    report = _deploy_and_call(local_aws, narrowed, [lambda sm, ssm: sm.get_secret_value(SecretId="ctl/app")])
    assert len(report.unallowed) == 1 and report.unallowed[0]["action"] == "secretsmanager:GetSecretValue"


def test_calls_without_a_principal_are_not_recorded(local_aws):
    """The harness's and the tests' own calls are nobody's role: only principals' calls are checked."""
    local_aws.client("ssm").put_parameter(Name="/x", Value="v", Type="String")
    assert local_aws.iam_calls.calls == []

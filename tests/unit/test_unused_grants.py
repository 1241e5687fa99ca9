"""What nothing uses is not granted or documented: the task role has no SES actions, the mirror docs show no
`docker.io/tootsuite` image."""

from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")


def _actions(role):
    found = []
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            found += actions if isinstance(actions, list) else [actions]
    return found


def _environment(container):
    return {e["Name"]: e.get("Value") for e in container.get("Environment", [])}


def test_task_role_grants_only_the_media_bucket():
    """Mastodon sends mail over SMTP and its only AWS SDK is aws-sdk-s3 (mastodon/mastodon Gemfile: `gem
    'aws-sdk-s3'`, no SES gem; `config/environments/production.rb` delivers with `SMTP_DELIVERY_METHOD`,
    default smtp). So the containers' role needs S3 on the media bucket and nothing else."""
    actions = _actions(TEMPLATE["Resources"]["TaskRole"])
    assert actions and all(a.startswith("s3:") for a in actions), actions


def test_every_mastodon_container_mails_through_the_ses_smtp_endpoint():
    """The SES grant is unused because mail goes to SMTP_SERVER with SmtpSecret's credentials (SmtpUser's key)."""
    checked = 0
    for resource in TEMPLATE["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        if resource["Properties"].get("TaskRoleArn") != {"Fn::GetAtt": ["TaskRole", "Arn"]}:
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            env = _environment(container)
            if "SMTP_SERVER" in env:
                checked += 1
                assert "email-smtp." in str(env["SMTP_SERVER"])
                secrets = {s["Name"] for s in container.get("Secrets", [])}
                assert {"SMTP_LOGIN", "SMTP_PASSWORD"} <= secrets
    assert checked >= 3


def test_mirror_docs_show_no_docker_hub_tootsuite_image():
    text = (ROOT / "docs/mirror.md").read_text()
    assert "docker.io/tootsuite" not in text and "tootsuite/" not in text

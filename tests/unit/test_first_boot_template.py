"""template.yaml wiring of first boot: every placeholder of the ASL file substituted, the rotation
schedule on the Redis secret, secrets retained, nothing secret in outputs or plain environment."""

import re

from tootstack_dev.local.template import load_template, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]


def test_every_placeholder_of_first_boot_is_substituted():
    machine = RESOURCES["FirstBootStateMachine"]["Properties"]
    placeholders = set(re.findall(r"\$\{([A-Za-z0-9]+)\}", (ROOT / machine["DefinitionUri"]).read_text()))
    assert placeholders == set(machine["DefinitionSubstitutions"])


def test_redis_secret_rotates_through_the_rotation_function_not_immediately():
    schedule = RESOURCES["RedisSecretRotation"]["Properties"]
    assert schedule["SecretId"] == {"Ref": "RedisSecret"}
    assert schedule["RotationLambdaARN"] == {"Fn::GetAtt": ["RedisRotationFunction", "Arn"]}
    assert schedule["RotateImmediatelyOnUpdate"] is False
    assert "FirstBootStart" in RESOURCES["RedisSecretRotation"]["DependsOn"]


def test_secrets_are_retained():
    for logical_id in ("AppSecrets", "DatabaseSecret", "RedisSecret", "SmtpSecret"):
        assert RESOURCES[logical_id]["DeletionPolicy"] == "Retain"
        assert RESOURCES[logical_id]["UpdateReplacePolicy"] == "Retain"


def test_only_the_probe_runs_in_the_vpc():
    probe = RESOURCES["RedisProbeFunction"]["Properties"]["VpcConfig"]
    assert probe["SecurityGroupIds"] == [{"Ref": "LambdaSecurityGroup"}]
    assert probe["SubnetIds"] == [{"Ref": "PublicSubnetA"}, {"Ref": "PublicSubnetB"}]
    assert "VpcConfig" not in RESOURCES["RedisRotationFunction"]["Properties"]


def test_first_boot_functions_hold_no_secret_in_environment_or_outputs():
    for logical_id in ("SecretsBootstrapFunction", "RedisRotationFunction", "RedisProbeFunction"):
        variables = RESOURCES[logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        assert not any("resolve:secretsmanager" in str(v) for v in variables.values()), logical_id
    assert "resolve:secretsmanager" not in str(TEMPLATE.get("Outputs", {}))

import json, logging
from tests.fixtures.oneoff import SecretScan, client
from tootstack.oneoff.admin import user_secret_name
def test_sizes(admin_stack, caplog, capsys):
    caplog.set_level(logging.INFO)
    scan = SecretScan(admin_stack.aws)
    for data in ({"username": "alice", "email": "alice@example.org", "role": "Owner"}, {"username": "alice", "email": "alice@example.org", "role": "Owner", "reset_password": True}):
        scan.executions.append(admin_stack.aws.run_state_machine(admin_stack.admin_sm, data))
    pw = client("secretsmanager").get_secret_value(SecretId=user_secret_name(admin_stack.stack_name, "alice"))["SecretString"]
    sizes = scan.assert_absent([pw], caplog, capsys)
    with open("/tmp/sizes.json","w") as f: json.dump({"statuses":[e.status for e in scan.executions],"sizes":sizes,"records":len(caplog.records)}, f, indent=1)

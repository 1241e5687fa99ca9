"""The project's layout promises: a sample event per function, every state machine deployed, a CLI with help."""

import json

import pytest

from tootstack_dev import cli
from tootstack_dev.local.template import load_template, local_functions, project_root

ROOT = project_root()
TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTIONS = local_functions(TEMPLATE, ROOT)


def test_every_function_directory_is_deployed_and_has_a_sample_event():
    deployed = {fn.code_dir.name for fn in FUNCTIONS.values()}
    on_disk = {p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert on_disk == deployed
    for name in on_disk:
        event = ROOT / "events" / f"{name}.json"
        assert event.is_file(), f"missing sample event {event}"
        json.loads(event.read_text())


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_handler_loads(logical_id):
    assert callable(FUNCTIONS[logical_id].entrypoint)


def test_every_state_machine_file_is_deployed():
    used = {
        r["Properties"]["DefinitionUri"]
        for r in TEMPLATE["Resources"].values()
        if r["Type"] == "AWS::Serverless::StateMachine" and isinstance(r["Properties"].get("DefinitionUri"), str)
    }
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "statemachines").glob("*.asl.*")}
    assert files == used


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: tootstack" in capsys.readouterr().out

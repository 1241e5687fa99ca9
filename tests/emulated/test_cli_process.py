"""The `tootstack` command run as a process (`python -m tootstack_dev.cli`): what the unit tier's in-process
calls of `cli.main` cannot show (the module's entry point, stdin, the exit status)."""

import json
import subprocess
import sys
from datetime import timedelta

from tootstack_dev import cli
from tootstack_dev.crashloop import synth

E = synth.EPOCH


def test_replay_from_stdin_as_a_subprocess():
    text = "\n".join(json.dumps(synth.task_stopped("elb_health_check", at=E + timedelta(seconds=i))) for i in range(3))
    proc = subprocess.run([sys.executable, "-m", "tootstack_dev.cli", "crashloop", "replay", "-"], input=text,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["action"] == "alert"


def test_cli_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "tootstack_dev.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # introspecting argparse
    for name in commands:
        assert name in proc.stdout
        sub = subprocess.run([sys.executable, "-m", "tootstack_dev.cli", name, "--help"], capture_output=True, text=True)
        assert sub.returncode == 0 and "usage: tootstack" in sub.stdout

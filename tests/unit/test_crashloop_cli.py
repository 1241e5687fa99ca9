"""`tootstack crashloop replay`: recorded-shape events in, one JSON line per decision out."""

import json
from datetime import timedelta
from pathlib import Path

import pytest

from tootstack_dev import cli
from tootstack_dev.crashloop import synth

DATA = Path(__file__).parents[1] / "data" / "ecs_events"
E = synth.EPOCH
TD1 = synth.task_definition_arn("web", 1)
TD2 = synth.task_definition_arn("web", 2)


def _trace():
    return [
        synth.task_stopped("user_initiated", task_definition=TD1, deployment="ecs-svc/1", at=E),
        synth.deployment_event("SERVICE_DEPLOYMENT_COMPLETED", deployment="ecs-svc/1", at=E + timedelta(seconds=1)),
        synth.deployment_event("SERVICE_DEPLOYMENT_IN_PROGRESS", deployment="ecs-svc/2", at=E + timedelta(seconds=60)),
        *[synth.task_stopped("spot_interruption", service="sidekiq", at=E + timedelta(seconds=70 + i)) for i in range(5)],
        *[synth.task_stopped("secrets", task_definition=TD2, deployment="ecs-svc/2", at=E + timedelta(seconds=100 + 30 * i)) for i in range(4)],
        *[synth.task_stopped("exit_nonzero", service="streaming", at=E + timedelta(seconds=200 + 60 * i)) for i in range(3)],
    ]


def _write(tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_replay_prints_one_line_per_decision(tmp_path, capsys):
    trace = _trace()
    path = _write(tmp_path, [json.dumps(e) for e in trace])
    assert cli.main(["crashloop", "replay", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["event_index"], o["service"], o["action"]) for o in out] == [(10, "web", "rollback"), (14, "streaming", "alert")]
    assert set(out[0]) == {"event_index", "service", "action", "reason", "via", "task_definition", "crash_count", "event",
                           "target_task_definition"}
    assert "web:1" in out[0]["reason"] and out[0]["target_task_definition"] == TD1
    for line in out:   # each decision names the event that triggered it
        triggering = trace[line["event_index"]]
        assert line["event"]["id"] == triggering["id"]
        assert line["event"]["task_id"] == triggering["detail"]["taskArn"].rsplit("/", 1)[-1]
    assert out[1]["service_left_running"] is True and out[1]["alerts"] == 1 and out[1]["tried"]


def test_replay_of_every_fixture(tmp_path, capsys):
    """The fixtures share one service and task definition: its 7 crash kinds halt it once, at the 3rd crash;
    with a threshold of 8 nothing halts (the benign stops and one-off tasks never count)."""
    paths = sorted(DATA.glob("*.json"))
    lines = [json.dumps(json.loads(p.read_text())) for p in paths]
    path = _write(tmp_path, lines)
    assert cli.main(["crashloop", "replay", "--threshold", "8", str(path)]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["crashloop", "replay", str(path)]) == 0
    [decision] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    crash_stems = {"task_exit_nonzero", "task_oom", "task_exit_zero", "task_elb_health_check",
                   "task_container_health_check", "task_image_pull", "task_secrets"}
    third = [i for i, p in enumerate(paths) if p.stem in crash_stems][2]
    assert decision["event_index"] == third and decision["action"] == "alert"


def test_replay_threshold_option(tmp_path, capsys):
    crashes = [json.dumps(synth.task_stopped("oom", at=E + timedelta(seconds=i))) for i in range(5)]
    assert cli.main(["crashloop", "replay", "--threshold", "5", str(_write(tmp_path, crashes))]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["event_index"] == 4


def test_malformed_lines_are_named_and_skipped(tmp_path, capsys):
    lines = [json.dumps(e) for e in _trace()]
    lines.insert(3, "{this is not json")
    lines.insert(6, json.dumps({"detail-type": "ECS Task State Change", "source": "aws.ecs"}))
    lines.insert(8, "")
    assert cli.main(["crashloop", "replay", str(_write(tmp_path, lines))]) == 2
    captured = capsys.readouterr()
    assert "events.jsonl line 4: not JSON" in captured.err
    assert "events.jsonl line 7: malformed 'ECS Task State Change' event" in captured.err
    assert "2 malformed line(s) skipped: 4, 7" in captured.err
    assert "Traceback" not in captured.err
    # the good lines were still replayed (indices shift by the inserted lines)
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [(o["service"], o["action"]) for o in out] == [("web", "rollback"), ("streaming", "alert")]


def test_missing_file_and_bad_options_exit_2(tmp_path, capsys):
    assert cli.main(["crashloop", "replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = _write(tmp_path, ["{}"])
    assert cli.main(["crashloop", "replay", "--threshold", "0", str(path)]) == 2


@pytest.mark.parametrize("argv", [["crashloop", "--help"], ["crashloop", "replay", "--help"], ["crashloop", "resume", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0 and "usage: tootstack crashloop" in capsys.readouterr().out


def test_replay_of_a_day_with_an_outage_shows_alerts_escalations_and_no_stop(tmp_path, capsys):
    """A 75-minute database outage across every service, replayed on the events' own clock: one alert per
    service by its 3rd crash, one escalation per service an hour later, nothing stopped."""
    events = synth.stable_revisions() + synth.dependency_outage(E + timedelta(hours=2), 75)
    path = _write(tmp_path, [json.dumps(e) for e in events])
    assert cli.main(["crashloop", "replay", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    services = sorted(synth.OUTAGE_STOPS)
    assert sorted(o["service"] for o in out if o["action"] == "alert") == services
    assert sorted(o["service"] for o in out if o["action"] == "escalate") == services
    assert len(out) == 2 * len(services) and all(o["service_left_running"] for o in out)
    for o in out:
        assert o["event"]["id"] == events[o["event_index"]]["id"]
    escalation = next(o for o in out if o["action"] == "escalate" and o["service"] == "core")
    assert escalation["alerts"] == 2 and any("alerted 1 time(s)" in t for t in escalation["tried"])
    assert cli.main(["crashloop", "replay", "--escalate-minutes", "5", str(path)]) == 2   # shorter than the window
    assert "escalation period" in capsys.readouterr().err

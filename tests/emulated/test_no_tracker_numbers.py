"""Code, comments and docs name capabilities, never this project's tracker numbers ("issue 8", "the
issue-5 helper", "(#12)", "task 3"). A reference to another project's tracker names that project
(`mastodon/mastodon#40517`, `aws/containers-roadmap#493`) or is a link, and is allowed. Unit tier: reads
the tracked text files, no processes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_SUFFIXES = (".pem", ".png", ".jpg", ".gz", ".zip", ".lock")
TRACKER = re.compile(
    r"\b(?:issue|ticket|task|story|bug)[ -]?#?\d+\b"        # issue 8, issue-5, task #3, bug 12
    r"|(?<![\w/.-])#\d{1,5}\b"                              # "#12" not preceded by owner/repo
    r"|\bthe issue\b",                                      # "as the issue lists": name the capability
    re.IGNORECASE)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    paths = [ROOT / p for p in listed.split("\0") if p and "node_modules/" not in p and not p.endswith(SKIPPED_SUFFIXES)]
    return [p for p in paths if p.is_file() and p != Path(__file__).resolve()]   # this file plants its examples


def tracker_references(text: str) -> list[str]:
    """Each tracker-like reference, without links (a URL names its tracker)."""
    text = re.sub(r"https?://\S+", "", text)
    return [m.group(0) for m in TRACKER.finditer(text)]


def test_no_tracked_file_names_a_tracker_number():
    found = {}
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        hits = tracker_references(text)
        if hits:
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}


def test_the_scan_reads_the_repository():
    names = {str(p.relative_to(ROOT)) for p in tracked_text_files()}
    assert {"README.md", "template.yaml", "Makefile", "layers/tootstack/tootstack/locks.py"} <= names
    assert "tests/emulated/test_no_tracker_numbers.py" not in names


@pytest.mark.parametrize("planted", [
    "# see issue 8", "fixed in Issue #12", "(Added by the issue-5 helper)", "as task 3 asked", "rollback (#12)",
    "Every cut the issue lists", "bug 42 workaround",
])
def test_a_planted_tracker_number_is_caught(planted):
    assert tracker_references(planted)


@pytest.mark.parametrize("fine", [
    "mastodon/mastodon#40517", "[containers-roadmap#493](https://github.com/aws/containers-roadmap/issues/493)",
    "https://github.com/aws/aws-cdk/pull/13130", "color #fff", "DeadLetterQueuePolicy#0", "ops#1<a>",
    "the issuer name", "tissue 4",
])
def test_other_projects_and_non_references_pass(fine):
    assert not tracker_references(fine)

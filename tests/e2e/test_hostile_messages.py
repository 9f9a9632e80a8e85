"""The hostile-message corpus (tests/support/hostile.py) through every view of `watch` and through `dlq`.

For each view: exit 0, no traceback, no escape sequence reaches the output, every valid message
shown exactly once, every invalid one still on the queue (none deleted unshown: they are counted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from support import hostile
from support.cli import KINASE, ROOT, kinase
from worker import contract

pytestmark = pytest.mark.e2e


def send_corpus(stack) -> tuple[dict[str, dict], dict[str, str]]:
    valid, invalid = hostile.valid(stack.bucket), hostile.invalid(stack.bucket)
    stack.send([contract.dumps(m) for m in valid.values()] + list(invalid.values()))
    return valid, invalid


def assert_only_invalid_left(stack, invalid: dict) -> None:
    for _ in range(100):  # the watcher handed the invalid ones back with a short visibility timeout
        visible, in_flight = stack.depth(stack.queue)
        if in_flight == 0:
            break
        time.sleep(0.1)
    assert visible + in_flight == len(invalid)
    assert stack.depth(stack.dlq) == (0, 0)


def test_json_watch_prints_valid_json_once_per_valid_message_and_leaves_the_rest(fresh):
    valid, invalid = send_corpus(fresh)

    proc = kinase("watch", "--local", "--json", "--idle-timeout", "3", timeout=180)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "\u202e" not in proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(m["frame_index"] for m in got) == sorted(m["frame_index"] for m in valid.values())
    assert {m["frame_index"]: m for m in got} == {m["frame_index"]: m for m in valid.values()}
    assert f"invalid: {len(invalid)}" in proc.stderr
    assert_only_invalid_left(fresh, invalid)


def test_plain_watch_shows_escapes_as_text_and_leaves_the_invalid(fresh):
    valid, invalid = send_corpus(fresh)

    proc = kinase("watch", "--local", "--idle-timeout", "3", timeout=180)

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "\x9b" not in proc.stdout and "\u202e" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert len(lines) == len(valid)
    assert any("cam\\x1b[2J\\x1b[H1" in line for line in lines)
    assert any("cam\\u202egnp.exe" in line for line in lines)
    assert any(hostile.MARKUP in line for line in lines)
    assert proc.stderr.count("invalid message ") == len(invalid)
    assert "wrong schema '[/bad]'" in proc.stderr
    assert_only_invalid_left(fresh, invalid)


def test_live_table_shows_the_corpus_as_text_in_a_real_terminal(fresh, tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for this test (apt-get install tmux)")
    session = f"kinase-hostile-{tmp_path.name}"[:50]
    command = f"cd {ROOT} && env KINASE_HOME={os.environ['KINASE_HOME']} COLUMNS=200 LINES=50 {' '.join(KINASE)} watch --local; echo exit=$?; sleep 600"
    # A private tmux server: a shared one may size new windows to another client's terminal.
    tmux = ["tmux", "-L", session, "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", command], check=True)
    subprocess.run([*tmux, "set-option", "-t", session, "window-size", "manual"], check=True)
    subprocess.run([*tmux, "resize-window", "-t", session, "-x", "200", "-y", "50"], check=True)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def title() -> str:
        return subprocess.run([*tmux, "display-message", "-p", "-t", session, "#{pane_title}"], capture_output=True, text=True).stdout

    def wait_for(*fragments: str) -> str:
        """The screen once it holds every fragment (a capture can land mid-redraw, so poll for all of them)."""
        text = ""
        for _ in range(600):
            text = screen()
            if all(re.search(f, text) for f in fragments):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{fragments!r} never all appeared on screen:\n{text}")

    try:
        wait_for(r"frames\s+0\b")
        valid, invalid = send_corpus(fresh)
        shown = wait_for(
            rf"frames\s+{len(valid)}\b",
            rf"invalid\s+{len(invalid)}\b",
            re.escape("cam\\x1b[2J\\x1b[H1"),
            re.escape("\\x1b]0;pwned-title\\x07"),
            re.escape("[/x][link=https://evil.example/]"),
            re.escape("wrong schema '[/bad]'"),
        )
        assert "time (UTC)" in shown  # the header was not wiped by a clear-screen sequence
        assert "pwned-title" not in title()
        subprocess.run([*tmux, "send-keys", "-t", session, "C-c"], check=True)
        ended = wait_for(r"exit=\d+")
        assert f"watch ended (interrupted): {len(valid)} frames" in ended and "exit=0" in ended
        assert "Traceback" not in ended
        assert "pwned-title" not in title()
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert_only_invalid_left(fresh, invalid)


def test_dlq_ls_and_redrive_handle_the_corpus(fresh):
    valid, invalid = hostile.valid(fresh.bucket), hostile.invalid(fresh.bucket)
    bodies = [contract.dumps(m) for m in valid.values()] + list(invalid.values())
    sqs = fresh.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=fresh.dlq, MessageBody=body)

    listed = kinase("dlq", "ls", "--local")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr and "\x1b" not in listed.stdout + listed.stderr
    assert listed.stdout.count("    valid") == len(valid)
    assert "wrong schema '[/bad]'" in listed.stdout and "NaN is not a JSON number" in listed.stdout
    assert "wrong schema 'x\\x1b[2J" in listed.stdout

    as_json = kinase("dlq", "ls", "--local", "--json")
    assert as_json.returncode == 0, as_json.stderr
    messages = json.loads(as_json.stdout)["data"]["messages"]
    assert sorted(m["body"] for m in messages) == sorted(bodies)

    moved = kinase("dlq", "redrive", "--local", "--yes")
    assert moved.returncode == 0, moved.stderr
    assert f"moved {len(bodies)} message(s)" in moved.stderr
    assert fresh.depth(fresh.dlq) == (0, 0) and fresh.depth(fresh.queue)[0] == len(bodies)

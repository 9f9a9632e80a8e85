"""The hostile-message corpus (tests/support/hostile.py) through every view of `watch` and through `dlq`.

For each view: exit 0, no traceback, no escape sequence reaches the output, every valid message
shown exactly once, every invalid one still on the queue (none deleted unshown: they are counted).
"""

from __future__ import annotations

import json
import re
import time

import pytest

from support import hostile
from support.cli import kinase
from support.terminal import terminal
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
    env = {"COLUMNS": "200", "LINES": "50"}
    with terminal(f"kinase-hostile-{tmp_path.name}", "watch", "--local", size=(200, 50), env=env) as term:
        term.wait_for(r"frames\s+0\b")
        valid, invalid = send_corpus(fresh)
        shown = term.wait_for(
            rf"frames\s+{len(valid)}\b",
            rf"invalid\s+{len(invalid)}\b",
            re.escape("cam\\x1b[2J\\x1b[H1"),
            re.escape("\\x1b]0;pwned-title\\x07"),
            re.escape("[/x][link=https://evil.example/]"),
            re.escape("wrong schema '[/bad]'"),
        )
        assert "time (UTC)" in shown  # the header was not wiped by a clear-screen sequence
        assert "pwned-title" not in term.title()
        term.keys("C-c")
        ended = term.wait_for(r"exit=\d+")
        assert f"watch ended (interrupted): {len(valid)} frames" in ended and "exit=0" in ended
        assert "Traceback" not in ended
        assert "pwned-title" not in term.title()
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

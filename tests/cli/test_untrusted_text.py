"""Untrusted text (ui/text.py) and hostile bodies through the contract: inert text, a reason, never a traceback."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from kinase_cli.ui.text import plain, visible
from kinase_cli.watch import view
from kinase_cli.watch.stats import Row
from support import hostile
from worker import contract


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("a\x07b", "a\\x07b"),
        ("\x9b2J", "\\x9b2J"),
        ("cam\u202egnp.exe", "cam\\u202egnp.exe"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("two\nlines\r\t", "two\\x0alines\\x0d\\x09"),
        ("bad \udcff byte", "bad \\udcff byte"),
        ("person×3 café 東京", "person×3 café 東京"),
    ],
)
def test_visible_writes_controls_bidi_and_invisibles_as_escapes(raw, shown):
    assert visible(raw) == shown


def test_visible_limits_long_text_and_says_so():
    assert visible("x" * 50, limit=10) == "x" * 10 + "… (40 more characters)"


def test_plain_is_never_markup_and_prints_no_escape():
    console = Console(record=True, width=200, force_terminal=True, color_system=None)
    console.print(plain(f"{hostile.MARKUP}{hostile.OSC_TITLE}{hostile.ESC_CLEAR}"))
    text = console.export_text()
    assert hostile.MARKUP in text and "\\x1b]0;pwned-title\\x07" in text
    assert "\x1b" not in text


def test_every_view_of_a_hostile_row_is_inert():
    row = Row(0.0, f"cam{hostile.ESC_CLEAR}{hostile.MARKUP}", "1", f"{hostile.OSC_TITLE}×1", 0.5, 3.0)
    bad = Row(None, "?", "?", "", None, None, error=f"wrong schema '{hostile.MARKUP}\x1b[2J'")
    console = Console(record=True, width=400, force_terminal=True, color_system=None)
    for r in (row, bad):
        console.print(*view.cells(r))
        assert "\x1b" not in view.line(r) and "\u202e" not in view.line(r)
    shown = console.export_text()
    assert "\x1b" not in shown and hostile.MARKUP in shown and "\\x1b]0;pwned-title" in shown


@pytest.mark.parametrize("name", sorted(hostile.invalid("kinase-frames").keys()))
def test_hostile_invalid_bodies_end_in_a_bounded_reason(name):
    with pytest.raises(contract.ContractError) as caught:
        contract.parse(hostile.invalid("kinase-frames")[name])
    assert 0 < len(caught.value.reason) <= 400


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"a": -Infinity}', "-Infinity is not a JSON number"),
        ('{"a": 1e400}', "out of range"),
        ("1" * 5000, "too large"),
        ('{"a": 18446744073709551616}', "too large"),
        ("[" * 100_000, "not JSON"),
    ],
)
def test_non_finite_and_oversized_numbers_are_refused_with_a_reason(body, reason):
    with pytest.raises(contract.ContractError) as caught:
        contract.parse(body)
    assert reason in caught.value.reason


@pytest.mark.parametrize("name", sorted(hostile.valid("kinase-frames").keys()))
def test_hostile_but_valid_messages_parse_and_print_back_as_valid_json(name):
    message = hostile.valid("kinase-frames")[name]
    parsed = contract.parse(contract.dumps(message))
    assert json.loads(json.dumps(parsed, allow_nan=False)) == message

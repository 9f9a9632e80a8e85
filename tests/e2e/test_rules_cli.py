"""`kinase rules check/apply/show`, run for real: every error one line with its path, the local stack stores
versions, an invalid file is refused whole and the rules in force stay, hostile names are inert."""

from __future__ import annotations

import json

import pytest
import yaml

from support.cli import kinase
from support.json_contract import envelope

pytestmark = pytest.mark.e2e

WIDE = {"COLUMNS": "220"}
HOSTILE = "<img src=x onerror=alert(1)>\x1b[2J\u202e"

VALID = """\
schema: kinase.rules/1
streams:
  "*":
    lines:
      - name: door
        points: [[0.5, 0.0], [0.5, 1.0]]
        in_side: [0.9, 0.5]
        classes: [person]
    zones:
      - name: bay
        polygon: [[0.625, 0.0], [0.875, 0.0], [0.875, 1.0], [0.625, 1.0]]
        classes: [car]
        dwell_s: 600
    alerts:
      - events: [line_crossed, dwell]
        classes: [person]
        min_conf: 0.5
        cooldown_s: 60
"""

INVALID = """\
schema: kinase.rules/1
streams:
  cam1:
    lines:
      - name: door
        points: [[0.5, 0.0]]
        in_side: [0.9, 0.5]
    zones:
      - name: bay
        polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]
        colour: red
"""
INVALID_ERRORS = [
    "error: streams.cam1.lines[0].points: needs 2 points",
    "error: streams.cam1.zones[0].colour: unknown key",
]


def rules_file(tmp_path, text: str, name: str = "rules.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_check_passes_a_valid_file_and_warns_on_unknown_classes(tmp_path):
    path = rules_file(tmp_path, VALID)
    ok = kinase("rules", "check", path, env=WIDE, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "" and "valid kinase.rules/1" in ok.stderr and "1 line(s), 1 zone(s), 1 alert(s)" in ok.stderr

    warned = kinase("rules", "check", path, "--classes", "person,bus", env=WIDE, timeout=120)
    assert warned.returncode == 0, warned.stderr
    assert [line for line in warned.stderr.splitlines() if line.startswith("warning: ")] == [
        'warning: streams["*"].zones[0].classes[0]: "car" is not a class of the model'
    ]

    shapes = kinase("rules", "check", path, "--model", "models/shapes-yolo11n.onnx", env=WIDE, timeout=120)  # names from its metadata
    assert shapes.returncode == 0 and 'streams["*"].lines[0].classes[0]: "person" is not a class of the model' in shapes.stderr

    data = envelope(kinase("rules", "check", path, "--classes", "person", "--json", timeout=120).stdout, "rules check")
    assert data["valid"] is True and data["errors"] == [] and len(data["warnings"]) == 1
    assert data["counts"] == {"streams": 1, "lines": 1, "zones": 1, "alerts": 1}


def test_check_lists_every_error_on_its_own_line_and_fails(tmp_path):
    path = rules_file(tmp_path, INVALID)
    refused = kinase("rules", "check", path, env=WIDE, timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    errors = error_lines(refused.stderr)
    assert errors[:-1] == INVALID_ERRORS and "2 error(s)" in errors[-1]

    data_proc = kinase("rules", "check", path, "--json", timeout=120)
    assert data_proc.returncode == 1
    data = envelope(data_proc.stdout, "rules check")
    assert data["valid"] is False and data["errors"] == [e.removeprefix("error: ") for e in INVALID_ERRORS]

    crossing = rules_file(
        tmp_path,
        INVALID.replace("        points: [[0.5, 0.0]]\n", "        points: [[0.5, 0.0], [0.5, 1.0]]\n").replace(
            "        colour: red\n", ""
        ),
        "crossing.yaml",
    )
    assert error_lines(kinase("rules", "check", crossing, env=WIDE, timeout=120).stderr)[0] == (
        "error: streams.cam1.zones[0].polygon: crosses itself (edges 0 and 2)"
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("schema: [unclosed\n", "(file): not YAML"),
        ('{"schema": ', "(file): not JSON"),
        ("a: &x [1]\nb: *x\n", "aliases (*name) are not allowed"),
    ],
)
def test_check_refuses_what_is_not_a_document_in_one_line(tmp_path, text, words):
    refused = kinase("rules", "check", rules_file(tmp_path, text), env=WIDE, timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert words in error_lines(refused.stderr)[0]


def test_a_file_name_is_printed_as_typed_never_as_markup(tmp_path):
    folder = tmp_path / "[bold]x[red]"
    folder.mkdir()
    ok = kinase("rules", "check", rules_file(folder, VALID), env=WIDE, timeout=120)
    assert ok.returncode == 0 and f"{folder}/rules.yaml: valid kinase.rules/1" in ok.stderr


def test_check_of_a_missing_file_is_one_line(tmp_path):
    refused = kinase("rules", "check", str(tmp_path / "nope.yaml"), timeout=120)
    assert refused.returncode == 2 and error_lines(refused.stderr) == [
        f"error: cannot read {tmp_path / 'nope.yaml'}: No such file or directory"
    ]


def show(**kw) -> dict:
    proc = kinase("rules", "show", "--local", "--json", timeout=120, **kw)
    assert proc.returncode == 0, proc.stderr
    return envelope(proc.stdout, "rules show")


def test_apply_show_versions_and_an_invalid_apply_changes_nothing(deployed_stack, tmp_path):
    before = show()["version"] or 0
    first = kinase("rules", "apply", rules_file(tmp_path, VALID), "--local", "--json", timeout=180)
    assert first.returncode == 0, first.stderr
    applied = envelope(first.stdout, "rules apply")
    assert applied["version"] == before + 1 and applied["bucket"] == deployed_stack["FramesBucketName"]
    assert applied["key"] == f"rules/v{before + 1:06d}.json" and applied["warnings"] == []
    shown = show()
    assert shown["version"] == before + 1 and shown["applied_at"] == applied["applied_at"]
    assert shown["rules"] == yaml.safe_load(VALID)

    second_doc = VALID.replace("name: door", "name: gate").replace('"*":', "cam9:")
    second = kinase("rules", "apply", rules_file(tmp_path, second_doc, "second.yaml"), "--local", timeout=180, env=WIDE)
    assert second.returncode == 0, second.stderr
    assert f"as rules v{before + 2} " in second.stderr
    assert 'warning: streams.cam9: no stream "cam9" in this environment' in second.stderr  # a warning, not a refusal
    assert show()["version"] == before + 2

    refused = kinase("rules", "apply", rules_file(tmp_path, INVALID, "bad.yaml"), "--local", timeout=180, env=WIDE)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    errors = error_lines(refused.stderr)
    assert errors[:-1] == INVALID_ERRORS and "nothing applied, the rules in force stay" in errors[-1]
    after = show()
    assert after["version"] == before + 2 and after["rules"]["streams"]["cam9"]["lines"][0]["name"] == "gate"


def test_show_prints_hostile_names_as_inert_text(deployed_stack, tmp_path):
    text = json.dumps(
        {
            "schema": "kinase.rules/1",
            "streams": {"*": {"lines": [{"name": HOSTILE, "points": [[0, 0.5], [1, 0.5]], "in_side": [0.5, 0.9], "classes": [HOSTILE]}]}},
        }
    )
    applied = kinase("rules", "apply", rules_file(tmp_path, text, "hostile.json"), "--local", timeout=180, env=WIDE)
    assert applied.returncode == 0, applied.stderr
    shown = kinase("rules", "show", "--local", timeout=120, env=WIDE)
    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\u202e" not in shown.stdout
    assert "line <img src=x onerror=alert(1)>\\x1b[2J\\u202e" in shown.stdout
    assert show()["rules"]["streams"]["*"]["lines"][0]["name"] == HOSTILE  # the data itself is kept as written

"""Rules (`kinase.rules/1`): the schema module is the single source of truth; every error is one line
with its path, all of them at once; a stream's own entry replaces "*"; the store is versioned."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from worker import rules

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = """\
schema: kinase.rules/1
streams:
  "*":                                  # or a stream name; a stream's own entry wins over "*"
    lines:
      - name: door
        points: [[0.5, 0.0], [0.5, 1.0]]
        in_side: [0.9, 0.5]             # a point on the "in" side
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


def example() -> dict:
    return rules.decode(EXAMPLE)


def with_stream(name: str, entry: dict) -> dict:
    return {"schema": rules.SCHEMA_ID, "streams": {name: entry}}


def test_schema_file_matches_module():
    assert json.loads((ROOT / "docs" / "rules.schema.json").read_text()) == rules.SCHEMA


def test_the_issue_example_parses_with_defaults_filled():
    parsed = rules.load(EXAMPLE).rules_for("any-camera")
    (door,) = parsed.lines
    assert door == rules.Line(
        name="door", points=((0.5, 0.0), (0.5, 1.0)), in_side=(0.9, 0.5), classes=("person",), min_far_side_s=0.5, anchor="center"
    )
    (bay,) = parsed.zones
    assert bay.polygon[0] == (0.625, 0.0) and bay.dwell_s == 600.0 and bay.anchor == "bottom_center" and bay.classes == ("car",)
    (alert,) = parsed.alerts
    assert alert == rules.Alert(events=("line_crossed", "dwell"), classes=("person",), min_conf=0.5, cooldown_s=60.0, clip=None)


def test_json_and_yaml_give_the_same_rules():
    assert rules.load(json.dumps(example())) == rules.load(EXAMPLE)


def test_defaults_of_optional_fields():
    doc = with_stream(
        "cam1",
        {
            "lines": [{"name": "l", "points": [[0, 0.5], [1, 0.5]], "in_side": [0.5, 0.9]}],
            "zones": [{"name": "z", "polygon": [[0, 0], [1, 0], [1, 1]]}],
            "alerts": [{"events": ["object_appeared"], "clip": {"pre_s": 5, "post_s": 10}}],
        },
    )
    parsed = rules.build(doc).rules_for("cam1")
    assert parsed.lines[0].classes is None and parsed.lines[0].min_far_side_s == rules.MIN_FAR_SIDE_S > 0
    assert parsed.zones[0].dwell_s is None and parsed.zones[0].anchor == "bottom_center"
    assert parsed.alerts[0].cooldown_s == rules.COOLDOWN_S and parsed.alerts[0].min_conf == 0.0
    assert parsed.alerts[0].clip == rules.Clip(pre_s=5.0, post_s=10.0)


def test_a_streams_own_entry_replaces_the_wildcard():
    doc = example()
    doc["streams"]["cam1"] = {"zones": [{"name": "dock", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]]}]}
    parsed = rules.build(doc)
    assert [z.name for z in parsed.rules_for("cam1").zones] == ["dock"] and parsed.rules_for("cam1").lines == ()
    assert [line.name for line in parsed.rules_for("cam2").lines] == ["door"]
    assert rules.build(with_stream("cam1", {})).rules_for("cam2") == rules.NO_RULES
    doc["streams"]["cam3"] = {}  # an own entry with nothing in it turns the "*" rules off for that stream
    assert rules.build(doc).rules_for("cam3") == rules.NO_RULES


def test_rules_are_frozen():
    parsed = rules.load(EXAMPLE)
    with pytest.raises(AttributeError):
        parsed.rules_for("x").lines[0].name = "other"
    with pytest.raises(TypeError):
        parsed.streams["cam9"] = rules.NO_RULES


LINE = {"name": "door", "points": [[0.5, 0.0], [0.5, 1.0]], "in_side": [0.9, 0.5]}
ZONE = {"name": "bay", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4], [0.1, 0.4]]}


@pytest.mark.parametrize(
    ("stream", "entry", "expected"),
    [
        ("cam1", {"lines": [{**LINE, "points": [[0.5, 0.0]]}]}, "streams.cam1.lines[0].points: needs 2 points"),
        ("cam1", {"lines": [{**LINE, "points": [[0.5, 0], [0.5, 1], [0, 0]]}]}, "streams.cam1.lines[0].points: needs 2 points"),
        (
            "*",
            {"zones": [ZONE, {**ZONE, "name": "b", "polygon": [[0, 0], [1, 1]]}]},
            'streams["*"].zones[1].polygon: needs at least 3 points',
        ),
        (
            "cam1",
            {"lines": [{**LINE, "in_side": [1.5, 0.5]}]},
            "streams.cam1.lines[0].in_side[0]: coordinates are normalized 0..1, got 1.5",
        ),
        (
            "cam1",
            {"zones": [{**ZONE, "polygon": [[0, 0], [1, -0.1], [1, 1]]}]},
            "streams.cam1.zones[0].polygon[1][1]: coordinates are normalized 0..1, got -0.1",
        ),
        ("cam1", {"lines": [{**LINE, "points": [[0.5, 0.5], [0.5, 0.5]]}]}, "streams.cam1.lines[0].points: the two points are equal"),
        (
            "cam1",
            {"lines": [{**LINE, "in_side": [0.5, 0.3]}]},
            'streams.cam1.lines[0].in_side: is on the line: give a point on the "in" side',
        ),
        (
            "cam1",
            {"lines": [{**LINE, "in_side": [0.5, 1.7 / 2]}]},
            'streams.cam1.lines[0].in_side: is on the line: give a point on the "in" side',
        ),
        (
            "cam1",
            {"zones": [{**ZONE, "polygon": [[0, 0], [1, 1], [1, 0], [0, 1]]}]},
            "streams.cam1.zones[0].polygon: crosses itself (edges 0 and 2)",
        ),
        ("cam1", {"zones": [{**ZONE, "polygon": [[0, 0], [0.5, 0.5], [1, 1]]}]}, "streams.cam1.zones[0].polygon: has no area"),
        (
            "cam1",
            {"zones": [{**ZONE, "polygon": [[0, 0], [0, 0], [1, 1], [1, 0]]}]},
            "streams.cam1.zones[0].polygon: points 0 and 1 are equal",
        ),
        (
            "cam1",
            {"lines": [LINE], "zones": [{**ZONE, "name": "door"}]},
            'streams.cam1.zones[0].name: "door" is already the name of lines[0]',
        ),
        ("cam1", {"lines": [LINE, LINE]}, 'streams.cam1.lines[1].name: "door" is already the name of lines[0]'),
        ("cam1", {"lines": [{**LINE, "colour": "red"}]}, "streams.cam1.lines[0].colour: unknown key"),
        ("cam1", {"gates": []}, "streams.cam1.gates: unknown key"),
        ("cam1", {"lines": [{k: v for k, v in LINE.items() if k != "in_side"}]}, "streams.cam1.lines[0].in_side: required"),
        ("cam1", {"lines": [{**LINE, "name": 7}]}, "streams.cam1.lines[0].name: expected a string, got a number"),
        ("cam1", {"lines": {"door": LINE}}, "streams.cam1.lines: expected a list, got a mapping"),
        ("cam1", {"zones": [{**ZONE, "dwell_s": 0}]}, "streams.cam1.zones[0].dwell_s: must be more than 0, got 0"),
        ("cam1", {"lines": [{**LINE, "min_far_side_s": 0}]}, "streams.cam1.lines[0].min_far_side_s: must be more than 0, got 0"),
        (
            "cam1",
            {"lines": [{**LINE, "anchor": "feet"}]},
            'streams.cam1.lines[0].anchor: "feet" is not one of center, bottom_center, top_center',
        ),
        (
            "cam1",
            {"alerts": [{"events": ["explode"]}]},
            'streams.cam1.alerts[0].events[0]: "explode" is not one of line_crossed, zone_entered, zone_left, dwell, object_appeared, camera_offline, camera_online',
        ),
        ("cam1", {"alerts": [{"events": ["dwell"], "min_conf": 2}]}, "streams.cam1.alerts[0].min_conf: must be at most 1, got 2"),
        ("cam1", {"alerts": [{"events": ["dwell"], "clip": {"pre_s": 5}}]}, "streams.cam1.alerts[0].clip.post_s: required"),
        ("cam1", {"alerts": [{"events": []}]}, "streams.cam1.alerts[0].events: must not be empty"),
        ("bad name!", {}, 'streams["bad name!"]: not a stream name: letters, digits, "_", "." and "-" (at most 256), or "*"'),
    ],
)
def test_each_error_is_one_line_with_its_path(stream, entry, expected):
    found = rules.errors(with_stream(stream, entry))
    assert found == [expected]


def test_top_level_errors():
    assert rules.errors({"schema": "kinase.rules/2", "streams": {}, "extra": 1}) == [
        "extra: unknown key",
        'schema: must be "kinase.rules/1", got "kinase.rules/2"',
    ]
    assert rules.errors([]) == ["(root): expected a mapping, got a list"]
    assert rules.errors({}) == ["schema: required", "streams: required"]


def test_every_error_is_listed_at_once():
    doc = example()
    star = doc["streams"]["*"]
    star["lines"].append({**LINE, "name": "door", "points": [[0.2, 0.2], [0.2, 0.2]]})
    star["zones"][0]["polygon"] = [[0, 0], [1, 1]]
    star["alerts"][0]["cooldown_s"] = -1
    doc["streams"]["cam1"] = {"lines": [{**LINE, "in_side": [0.5, 0.5]}]}
    with pytest.raises(rules.RulesError) as refused:
        rules.build(doc)
    assert refused.value.errors == [
        'streams["*"].alerts[0].cooldown_s: must be at least 0, got -1',
        'streams["*"].lines[1].name: "door" is already the name of lines[0]',
        'streams["*"].lines[1].points: the two points are equal',
        'streams["*"].zones[0].polygon: needs at least 3 points',
        'streams.cam1.lines[0].in_side: is on the line: give a point on the "in" side',
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("schema: [unclosed\n", "(file): not YAML: "),
        ('{"schema": ', "(file): not JSON: Expecting value at line 1 column 12"),
        ("a: &x [1, 2]\nb: *x\n", "(file): not YAML: aliases (*name) are not allowed at line 2 column 4"),
        ("schema: kinase.rules/1\nstreams:\n  1: {}\n", "streams: key 1 is not a string"),
        (
            "schema: kinase.rules/1\nstreams:\n  cam1:\n    zones:\n      - dwell_s: .nan\n",
            "streams.cam1.zones[0].dwell_s: nan is not a number",
        ),
        ("when: 2026-01-01\n", "when: date values are not allowed"),
        (b"\xff\xfe", "(file): not UTF-8: invalid byte at 0"),
    ],
)
def test_texts_that_are_not_a_document(text, expected):
    with pytest.raises(rules.RulesError) as refused:
        rules.load(text)
    (line,) = refused.value.errors
    assert line.startswith(expected), line


def test_warnings_name_unknown_streams_and_classes_and_are_not_errors():
    doc = example()
    doc["streams"]["cam9"] = {"alerts": [{"events": ["object_appeared"], "classes": ["persn"]}]}
    assert rules.errors(doc) == []
    assert rules.warnings(doc, streams=["cam1"], classes=["person", "car"]) == [
        'streams.cam9: no stream "cam9" in this environment; its rules apply when it exists',
        'streams.cam9.alerts[0].classes[0]: "persn" is not a class of the model',
    ]
    assert rules.warnings(doc) == []


def test_hostile_names_stay_text_and_every_line_is_escaped():
    hostile = "<img src=x onerror=alert(1)>\x1b[2J\u202e"
    doc = with_stream(
        "cam1", {"lines": [{**LINE, "name": hostile}, {**LINE, "name": hostile}], "alerts": [{"events": ["dwell"], "classes": [hostile]}]}
    )
    parsed = rules.build({**doc, "streams": {"cam1": {"lines": [{**LINE, "name": hostile}]}}})
    assert parsed.rules_for("cam1").lines[0].name == hostile  # kept as data, shown through the untrusted-text helper
    lines = rules.errors(doc) + rules.warnings(doc, classes=["person"])
    assert len(lines) == 2
    for line in lines:
        assert "\x1b" not in line and "\u202e" not in line and "\\u001b" in line


# ---- the store, against moto in-process --------------------------------------------------------


@pytest.fixture
def s3():
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="frames")
        yield client


def test_no_rules_applied_is_none(s3):
    assert rules.fetch_current(s3, "frames") is None


def test_publish_versions_and_fetch_current(s3):
    first = example()
    assert rules.publish(s3, "frames", first, "2026-12-07T17:00:00.000Z") == 1
    current = rules.fetch_current(s3, "frames")
    assert (current.version, current.applied_at, current.doc) == (1, "2026-12-07T17:00:00.000Z", first)
    assert current.rules == rules.build(first)
    assert rules.fetch_current(s3, "frames", known=current) is current  # 304 Not Modified: nothing read again

    second = copy.deepcopy(first)
    second["streams"]["*"]["lines"][0]["name"] = "gate"
    assert rules.publish(s3, "frames", second, "2026-12-07T17:01:00.000Z") == 2
    changed = rules.fetch_current(s3, "frames", known=current)
    assert changed.version == 2 and changed.rules.rules_for("x").lines[0].name == "gate"
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="frames")["Contents"]) == [
        "rules/current.json",
        "rules/v000001.json",
        "rules/v000002.json",
    ]


def test_publish_refuses_an_invalid_document_and_keeps_the_current(s3):
    rules.publish(s3, "frames", example(), "2026-12-07T17:00:00.000Z")
    with pytest.raises(rules.RulesError):
        rules.publish(s3, "frames", with_stream("cam1", {"lines": [{**LINE, "points": [[0, 0]]}]}), "2026-12-07T17:01:00.000Z")
    assert rules.fetch_current(s3, "frames").version == 1
    assert rules.latest_version(s3, "frames") == 1


def test_a_version_number_taken_meanwhile_is_never_overwritten(s3):
    """Another apply stored v2 between our listing and our write: the conditional put (If-None-Match: *,
    S3 user guide "Add preconditions to S3 operations with conditional requests") refuses to overwrite
    it, and ours becomes v3."""
    rules.publish(s3, "frames", example(), "2026-12-07T17:00:00.000Z")
    s3.put_object(Bucket="frames", Key=rules.version_key(2), Body=b"{}")
    real = rules.latest_version
    try:
        rules.latest_version = lambda client, bucket: 1
        assert rules.publish(s3, "frames", example(), "2026-12-07T17:02:00.000Z") == 3
    finally:
        rules.latest_version = real
    assert s3.get_object(Bucket="frames", Key=rules.version_key(2))["Body"].read() == b"{}"
    assert rules.fetch_current(s3, "frames").version == 3


def test_current_never_goes_back_to_an_older_version(s3):
    rules.publish(s3, "frames", example(), "2026-12-07T17:00:00.000Z")
    s3.put_object(Bucket="frames", Key=rules.CURRENT_KEY, Body=rules._stored(7, "2026-12-07T17:05:00.000Z", example()))
    with pytest.raises(rules.RulesConflict, match="v7 was applied meanwhile"):
        rules.publish(s3, "frames", example(), "2026-12-07T17:01:00.000Z")
    assert rules.fetch_current(s3, "frames").version == 7


def test_a_stored_document_that_is_not_valid_is_refused(s3):
    s3.put_object(Bucket="frames", Key=rules.CURRENT_KEY, Body=b'{"version": 1, "applied_at": "x", "rules": {"schema": "no"}}')
    with pytest.raises(rules.RulesError):
        rules.fetch_current(s3, "frames")
    s3.put_object(Bucket="frames", Key=rules.CURRENT_KEY, Body=b"[]")
    with pytest.raises(rules.RulesError, match="not a stored rules version"):
        rules.fetch_current(s3, "frames")


def test_appeared_rules_default_their_quiet_period_and_share_the_names_of_lines_and_zones():
    doc = {
        "schema": rules.SCHEMA_ID,
        "streams": {"cam1": {"appeared": [{"name": "arrivals"}, {"name": "cars", "classes": ["car"], "quiet_s": 5}]}},
    }
    assert rules.build(doc).rules_for("cam1").appeared == (
        rules.Appeared(name="arrivals", classes=None, quiet_s=rules.APPEARED_QUIET_S),
        rules.Appeared(name="cars", classes=("car",), quiet_s=5.0),
    )
    door = {"name": "door", "points": [[0.5, 0], [0.5, 1]], "in_side": [1, 0.5]}
    clash = {"schema": rules.SCHEMA_ID, "streams": {"cam1": {"lines": [door], "appeared": [{"name": "door", "quiet_s": 0}]}}}
    assert rules.errors(clash) == [
        'streams.cam1.appeared[0].name: "door" is already the name of lines[0]',
        "streams.cam1.appeared[0].quiet_s: must be more than 0, got 0",
    ]

"""`kinase status`'s running counts: read from the checkpoint as the worker writes it (the one-off worker's in S3,
a fleet worker's in the stream's lease), shown per line and zone at 80 columns with every name inert, and in
`--json` under names declared as keyed by data.

The checkpoints are written by the worker's own stores from its own analyse stage, so a change of the
saved shape fails here instead of leaving `status` blank.
"""

from __future__ import annotations

import json
import types

import boto3
import pytest
from moto import mock_aws
from rich.console import Console

from kinase_cli.commands import status as status_command
from kinase_cli.workflows import status as status_workflow
from kinase_cli.workflows.streams import checkpoint_counts
from support.checkpoint_counts import EXPECTED, POSITION, analysed_stages, incarnation
from support.json_contract import DATA_MAPS, problems
from worker import layout
from worker.checkpoint import CheckpointStore
from worker.fleet.leases import LeaseCheckpointStore, LeaseTable
from worker.metrics import Metrics
from worker.sources.kinds import kvs_source

STREAM = "cam1"
HOSTILE_STREAM = "cam\x1b]0;owned\x07"
INCARNATION = incarnation()


@pytest.fixture
def aws():
    with mock_aws():
        yield types.SimpleNamespace(client=lambda service: boto3.client(service, region_name="us-east-1"))


def test_a_one_off_workers_s3_checkpoint_gives_the_streams_counts(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="frames")
    metrics = Metrics(STREAM)
    store = CheckpointStore(s3, "frames", layout.checkpoint_key(STREAM), STREAM, kvs_source(STREAM), INCARNATION, metrics)
    store.save({**POSITION, "stages": analysed_stages(STREAM)})
    record = status_workflow._checkpoint(aws, "frames", STREAM)
    assert checkpoint_counts(record) == EXPECTED
    assert status_workflow._gaps(record) == []


def test_no_checkpoint_or_one_without_rules_has_no_counts(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="frames")
    assert checkpoint_counts(status_workflow._checkpoint(aws, "frames", STREAM)) is None
    s3.put_object(Bucket="frames", Key=layout.checkpoint_key(STREAM), Body=json.dumps({**POSITION, "version": 2}).encode())
    assert checkpoint_counts(status_workflow._checkpoint(aws, "frames", STREAM)) is None


def test_a_fleet_workers_lease_checkpoint_gives_the_streams_counts(aws):
    dynamodb = aws.client("dynamodb")
    dynamodb.create_table(
        TableName="leases",
        AttributeDefinitions=[{"AttributeName": "stream", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "stream", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table = LeaseTable(dynamodb, "leases")
    table.ensure(STREAM)
    assert table.take(STREAM, "w1", 0, None) == 1
    store = LeaseCheckpointStore(table, STREAM, "w1", kvs_source(STREAM), INCARNATION, Metrics(STREAM))
    assert store.save({**POSITION, "stages": analysed_stages(STREAM)}) is not None
    assert checkpoint_counts(table.get(STREAM).checkpoint) == EXPECTED


def shown(monkeypatch, draw) -> str:
    console = Console(record=True, width=80, force_terminal=True)
    monkeypatch.setattr(status_command, "out", console)
    draw()
    return console.export_text()


def test_counts_at_80_columns_show_lines_and_zones_with_names_inert(monkeypatch):
    counts = checkpoint_counts({"stages": analysed_stages(STREAM)})
    text = shown(monkeypatch, lambda: status_command._render_counts({HOSTILE_STREAM: counts}))
    rows = [line for line in text.splitlines() if "Door" in line or "bay" in line]
    assert len(rows) == 2 and all(len(line) <= 80 for line in text.splitlines())
    door, bay = rows
    assert "Door [red]1[/re…" in door and door.split()[-5:] == ["2", "0", "-", "in", "person×2"]
    assert "bay\\u202e" in bay and "Fall×1" in bay
    assert "cam\\x1b]0;owned\\x07"[:12] in door and "\x07" not in text and "\u202e" not in text


def test_fleet_streams_counts_are_shown_and_streams_without_any_are_left_out(monkeypatch):
    counts = checkpoint_counts({"stages": analysed_stages(STREAM)})
    fleet = {
        "local": True,
        "leased_streams": 1,
        "scaling": None,
        "workers": [],
        "streams": [{"name": "cam2", "owner": "w1", "counts": counts}, {"name": "cam3", "owner": None, "counts": None}],
    }
    text = shown(monkeypatch, lambda: status_command._render_fleet(fleet))
    assert "counts" in text and "cam2" in text and "cam3" not in text
    assert "in person×2" in text and "Fall×1" in text


def test_status_json_declares_the_names_in_counts_as_keyed_by_data():
    counts = checkpoint_counts({"stages": analysed_stages(STREAM)})
    data = {"counts": counts, "fleet": {"streams": [{"name": "cam2", "counts": counts}]}}
    assert problems(data, DATA_MAPS["status"]) == []
    assert problems({"streams": [{"counts": counts}]}, DATA_MAPS["fleet status"]) == []
    assert problems({"streams": [{"counts": counts}]}, DATA_MAPS["stream ls"]) == []
    undeclared = problems(data)
    assert any("Door [red]1[/red]" in p for p in undeclared) and any("'Fall'" in p for p in undeclared)

"""`kinase status`'s fleet section as a table: worker ids and stream names are untrusted text (anyone who can
create a stream or run a worker names them), shown inert, never as markup or escape sequences."""

from __future__ import annotations

from rich.console import Console

from kinase_cli.commands import status


def render(monkeypatch, fleet) -> str:
    console = Console(record=True, width=200, force_terminal=True)
    monkeypatch.setattr(status, "out", console)
    status._render_fleet(fleet)
    return console.export_text(styles=True)


def test_fleet_rows_show_hostile_names_inert(monkeypatch):
    fleet = {
        "local": True,
        "leased_streams": 1,
        "streams": [{"owner": "ip-1-2\x1b]0;owned\x07"}, {"owner": None}],
        "scaling": None,
        "workers": [{"worker_id": "ip-1-2\x1b]0;owned\x07", "pid": 4242, "streams": ["[red]cam[/red]", "cam\u202e2"]}],
    }
    shown = render(monkeypatch, fleet)
    assert "1 worker(s), 1 of 2 stream(s) leased" in shown
    assert "ip-1-2\\x1b]0;owned\\x07" in shown and "\x07" not in shown
    assert "[red]cam[/red], cam\\u202e2" in shown and "4242" in shown


def test_aws_fleet_shows_the_service_and_its_limits_and_no_table_without_workers(monkeypatch):
    scaling = {"service": "kinase-dev-fleet", "desired_count": 2, "running_count": 1, "min": 2, "max": 10}
    shown = render(monkeypatch, {"local": False, "leased_streams": 0, "streams": [], "scaling": scaling, "workers": []})
    assert "0 worker(s), 0 of 0 stream(s) leased; service kinase-dev-fleet: desired 2, running 1, autoscaling 2..10" in shown
    assert "worker" not in shown.replace("worker(s)", "")


def test_no_fleet_section_for_a_stack_without_the_fleet(monkeypatch):
    assert render(monkeypatch, None) == ""


def test_lease_owners_are_matched_to_fargate_and_gpu_tasks_by_hostname():
    """A fleet worker's id begins with its hostname: a Fargate task's is its private address, a GPU task's
    (bridge network on EC2) its container's, the first 12 digits of the Docker container id ECS reports."""
    from kinase_cli.workflows.fleet import _task_host

    fargate = {"attachments": [{"details": [{"name": "privateIPv4Address", "value": "10.0.1.23"}]}], "containers": []}
    gpu = {"attachments": [], "containers": [{"name": "fleet", "runtimeId": "3f2a9c41b7d0e5f6a7b8c9d0e1f2a3b4c5d6e7f8"}]}
    assert _task_host(fargate) == "ip-10-0-1-23"
    assert _task_host(gpu) == "3f2a9c41b7d0"
    assert _task_host({"attachments": [], "containers": [{"name": "fleet"}]}) is None  # not started yet: no container id


def test_stream_rows_show_hostile_names_inert_with_their_reader_and_checkpoint():
    """The streams table of `fleet status` and `stream ls` (ui/fleet_tables.py)."""
    from kinase_cli.ui import fleet_tables

    row = {
        "name": "cam\x1b[2J",
        "owner": "[bold]w1[/bold]",
        "lag_ms": 1500,
        "fps": 4.0,
        "checkpoint_fragment": "9100\u202e",
        "checkpoint_at": "2026-12-07T11:58:00.000Z",
        "adopted": True,
        "status": "ACTIVE",
        "retention_hours": 24,
    }
    console = Console(record=True, width=250, force_terminal=True)
    console.print(fleet_tables.streams([row], media=True))
    shown = console.export_text(styles=True)
    assert "cam\\x1b[2J (adopted)" in shown and "\x1b[2J" not in shown
    assert "[bold]w1[/bold]" in shown and "9100\\u202e" in shown
    assert "1.5 s" in shown and "4.0" in shown and "12-07 11:58" in shown and "ACTIVE" in shown and "24" in shown


def test_stream_rows_at_80_columns_keep_the_stream_and_the_owner_and_cut_fragment_numbers_in_the_middle():
    from kinase_cli.ui import fleet_tables

    row = {
        "name": "kinase-prod-bay7",
        "owner": "ip-10-0-1-23",
        "lag_ms": 900,
        "fps": 5.0,
        "checkpoint_fragment": "91343852333181432392682062000000000000000000011",
        "checkpoint_at": "2026-12-07T11:58:00.000Z",
        "status": "ACTIVE",
        "retention_hours": 24,
    }
    for media in (True, False):
        console = Console(record=True, width=80)
        console.print(fleet_tables.streams([row, {**row, "name": "kinase-prod-door"}], media=media))
        shown = console.export_text()
        assert max(len(line) for line in shown.splitlines()) <= 80
        assert "kinase-prod-bay7" in shown and "kinase-prod-door" in shown and "9134…0011" in shown
        assert "ip-10-0-1-23" in shown

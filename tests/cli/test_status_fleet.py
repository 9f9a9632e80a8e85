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

"""`kinase status`: stacks, image, tasks, stream, running counts, fleet, queues and running cost on one screen."""

from __future__ import annotations

import typer

from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.ui import fleet_tables, jsonout
from kinase_cli.ui.console import out
from kinase_cli.ui.text import plain
from kinase_cli.workflows import fleet as fleet_workflow
from kinase_cli.workflows import status as status_workflow

EPILOG = """\
Examples:

  kinase status
  kinase status --local
  kinase status --json | jq .data.queue
  kinase status --json | jq '.data.tasks[] | {task_id, exit_code}'
  kinase status --json | jq '.data.fleet.workers[] | {worker_id, streams}'
  kinase status --json | jq '.data.counts.lines.door'

Tasks are the running ones and those ECS still remembers as stopped (about an hour), with exit codes
and stop reasons; on the local stack, the local worker runs. The fleet is `kinase fleet status`'s
view: its workers with the streams each holds, how many of the environment's streams are leased,
and on AWS the service's desired and running counts and autoscaling limits. With rules applied,
each stream's running counts (crossings per line and direction, objects in each zone) as its worker
last saved them in its checkpoint (the one-off worker's in S3, a fleet worker's in the stream's
lease). With `deploy --gpu`, the GPU instances' failed launches of the last hour (the Auto Scaling
group's activity: no capacity for the type in a zone, a vCPU quota too small) say why GPU tasks wait
in PROVISIONING. The cost is an ESTIMATE (see `kinase run-task --help`).
"""


def _render(data: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    where = "local stack" if data["local"] else data["region"]
    out.print(f"[bold]kinase {data['env']}[/] ({where})")
    stacks = Table(title="stacks", title_justify="left", show_edge=False)
    for column in ("stack", "status", "updated"):
        stacks.add_column(column)
    for s in data["stacks"]:
        style = "green" if s["status"].endswith("_COMPLETE") and "ROLLBACK" not in s["status"] else "yellow"
        stacks.add_row(s["name"], f"[{style}]{s['status']}[/]", str(s["updated_at"] or ""))
    out.print(stacks)

    image = data["image"]
    latest = image["latest"]
    out.print(f"\n[bold]image[/] {image['repository']}", highlight=False)
    if latest:
        out.print(f"  latest {latest['digest']} {','.join(latest['tags'])} pushed {latest['pushed_at']}", highlight=False)
    else:
        out.print("  [yellow]no image pushed yet[/] (run `kinase push-image`)", highlight=False)
    out.print(f"  task definition {image['task_definition']} runs {image['runs']}", highlight=False)

    tasks = Table(title="\ntasks", title_justify="left", show_edge=False)
    for column in ("task", "status", "exit", "started", "stopped", "reason"):
        tasks.add_column(column)
    for s in data["tasks"]:
        code = s["exit_code"]
        code_text = "" if code is None else (f"[red]{code}[/]" if code else "0")
        tasks.add_row(
            s["task_id"],
            s["last_status"] or "",
            code_text,
            str(s["started_at"] or ""),
            str(s["stopped_at"] or ""),
            escape(s["stopped_reason"] or ""),
        )
    if data["tasks"]:
        out.print(tasks)
    else:
        out.print("\n[bold]tasks[/] none (start one with `kinase run-task`)")

    stream = data["stream"]
    out.print(f"\n[bold]stream[/] {stream['name']} {stream['status']}, retention {stream['retention_hours']} h", highlight=False)
    if data["gaps"]:
        newest = data["gaps"][-1]
        where = f"fragments {newest.get('from') or '?'}..{newest.get('to') or '?'} ({newest.get('fragments')} fragments, {newest.get('frames')} frames read)"
        out.print(
            plain(
                f"gaps   {len(data['gaps'])} reported by the worker; newest at {newest.get('at')}: {where} not processed: {newest.get('reason')}",
                "yellow",
            )
        )
    _render_counts({stream["name"]: data["counts"]} if data["counts"] else {})
    _render_fleet(data["fleet"])
    _render_gpu(data["gpu"])
    queue, dlq = data["queue"], data["dead_letter_queue"]
    out.print(f"[bold]queue[/]  {queue['visible']} waiting, {queue['in_flight']} in flight", highlight=False)
    dlq_style = "bold red" if dlq["visible"] or dlq["in_flight"] else "green"
    out.print(f"[bold]DLQ[/]    [{dlq_style}]{dlq['visible']} waiting, {dlq['in_flight']} in flight[/]", highlight=False)
    if data["dashboard_url"]:
        out.print("[bold]dashboard[/] ", end="", highlight=False)
        out.print(data["dashboard_url"], markup=False, highlight=False, soft_wrap=True)
    money = data["cost"]
    out.print(
        f"[bold]cost[/]   ~${money['usd_per_hour']:.4f}/h for {money['running_tasks']} running task(s) (estimate; {money['note']})",
        highlight=False,
    )


def _render_gpu(gpu: dict | None) -> None:
    """A GPU task waits in PROVISIONING while its instance does not start; the group's activity says why."""
    if gpu is None:
        return
    failed = gpu["failed_activities"]
    if not failed:
        out.print(plain(f"gpu    capacity provider {gpu['capacity_provider']}: no failed instance launches in the last hour"))
        return
    out.print(
        plain(
            f"gpu    capacity provider {gpu['capacity_provider']}: GPU instances do not start "
            f"({len(failed)} failed launch(es) of group {gpu['group']}; GPU tasks wait in PROVISIONING until one starts)",
            "bold red",
        )
    )
    for activity in failed:
        out.print(plain(f"  {activity['status']} {activity['started_at']}: {activity['cause']}", "red"), soft_wrap=True)


def _render_fleet(fleet: dict | None) -> None:
    from rich.text import Text

    if fleet is None:
        return
    line = Text.assemble(
        ("\nfleet", "bold"),
        f"  {len(fleet['workers'])} worker(s), {fleet['leased_streams']} of {len(fleet['streams'])} stream(s) leased",
    )
    scaling = fleet["scaling"]
    if scaling:
        line.append("; " + fleet_workflow.scaling_text(scaling))
    out.print(line)
    if fleet["workers"]:
        out.print(fleet_tables.workers(fleet, show_edge=False))
    _render_counts({s["name"]: s["counts"] for s in fleet["streams"] if s.get("counts")})


def _render_counts(by_stream: dict[str, dict]) -> None:
    """The running counts the streams' workers saved in their checkpoints, as `kinase watch` shows them."""
    from kinase_cli.watch.view import running_counts_table

    table = running_counts_table(by_stream)
    if table is not None:
        out.print(table)


@with_target
def status(json_: Json = False, *, target: Target) -> None:
    """Show stacks, image, tasks, stream, fleet, queue and DLQ depth, and the estimated running cost."""
    data = status_workflow.gather(target)
    if json_:
        jsonout.emit("status", data)
    else:
        _render(data)


def register(app: typer.Typer) -> None:
    app.command("status", help=status.__doc__, epilog=EPILOG)(status)

"""How `kinase events` looks: the live table (readable at 80 columns), one plain line per event, the summary.

Stream, class, line, zone and rule names come from cameras' messages and operators' rules: every one
goes through `kinase_cli.ui.text` (a Rich `Text`, escapes made visible), never through markup.
"""

from __future__ import annotations

from datetime import datetime, timezone

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from kinase_cli.ui.text import plain, visible
from kinase_cli.watch.event_stats import EventRow, EventStats
from kinase_cli.watch.stats import Row, format_detections
from kinase_cli.watch.view import depth

TABLE_ROWS = 15
# Widest each name column gets: at 80 columns (one space between columns) that leaves the counts 17.
COLUMNS = (("stream", 12), ("event", 14), ("object", 12), ("where", 12))


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S")


def header(stats: EventStats, queue_name: str) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    with stats.lock:
        events, filtered, duplicates, alerts = stats.events, stats.filtered, stats.duplicates, stats.alerts
        types = format_detections(stats.types)
        invalid = stats.invalid
        reasons = ", ".join(f"{k}×{n}" for k, n in stats.invalid_reasons.most_common(3))
        queue_line = f"{depth(stats.queue_depth)} waiting, {depth(stats.in_flight)} in flight"
        if stats.dlq_depth is not None:  # known when the stack names the events dead-letter queue
            queue_line += f"   DLQ {stats.dlq_depth}"
        connection, notice = stats.connection, stats.notice
    extra = "".join(f"  {label} {n}" for label, n in (("alerts", alerts), ("filtered out", filtered), ("duplicates", duplicates)) if n)
    grid.add_row("events", f"{events}  ({stats.fps():.1f}/s){extra}")
    grid.add_row("types", plain(types))
    grid.add_row("invalid", plain(f"{invalid}" + (f"  ({reasons})" if reasons else ""), style="red" if invalid else ""))
    grid.add_row("queue", plain(f"{queue_name}: {queue_line}   [{connection}]"))
    if notice:
        grid.add_row("note", plain(notice, style="yellow", limit=300))
    return grid


def events_table(stats: EventStats, rows: int = TABLE_ROWS) -> Table:
    table = Table(expand=True, box=box.SIMPLE_HEAD, show_edge=False, padding=0, header_style="bold")
    table.add_column("time", no_wrap=True)
    for name, width in COLUMNS:
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=width)
    table.add_column("counts", ratio=1, no_wrap=True, overflow="ellipsis")
    with stats.lock:
        latest = list(stats.rows)[-rows:]
    for row in reversed(latest):
        table.add_row(*cells(row))
    return table


def cells(row: EventRow | Row) -> tuple[Text, ...]:
    """The table cells of one row, all plain text (the session builds them before acking the message)."""
    if not isinstance(row, EventRow):  # a message that failed validation
        return (Text("-"), Text("-"), Text("invalid", style="red"), Text("-"), Text("-"), plain(row.error, style="red", limit=300))
    style = "bold red" if row.alert else ""
    return (
        Text(clock(row.time)),
        plain(row.stream, limit=100),
        plain(row.type + (" !" if row.alert else ""), style=style),
        plain(row.object, limit=100),
        plain(row.where, limit=100),
        plain(row.counts, limit=300),
    )


def live(stats: EventStats, queue_name: str, rows: int = TABLE_ROWS) -> Group:
    return Group(header(stats, queue_name), events_table(stats, rows))


def line(row: EventRow | Row) -> str:
    """The plain-text form of a row, for when stdout is not a terminal."""
    if not isinstance(row, EventRow):
        return f"invalid message: {visible(row.error)}"
    alert = "  ALERT" if row.alert else ""
    return (
        f"{clock(row.time)}  {visible(row.stream)}  {visible(row.type)}{alert}  {visible(row.object)}"
        f"  {visible(row.where)}  counts {visible(row.counts)}"
    )


def summary_text(summary: dict, reason: str) -> Text:
    types = visible(format_detections(summary["types"]), limit=300) if summary["types"] else "-"
    parts = [
        f"events ended ({reason}): {summary['events']} events, {summary['alerts']} alerts",
        f"  types: {types}",
        f"  invalid: {summary['invalid']}, duplicates: {summary['duplicates']}, filtered out: {summary['filtered']}",
    ]
    if summary["saved"] or summary["save_errors"]:
        parts.append(f"  saved: {summary['saved']}, save errors: {summary['save_errors']}")
    return Text("\n".join(parts))

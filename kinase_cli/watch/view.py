"""How the watcher looks: the live table for a terminal, one plain line per frame otherwise, the summary.

Stream names, class names, reasons and keys come from messages: every one of them goes through
`kinase_cli.ui.text` (a Rich `Text`, escapes made visible), never through markup.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from kinase_cli.ui.text import plain, visible
from kinase_cli.watch.stats import Row, Stats, Tally, format_detections, percentile, tallies

TABLE_ROWS = 15
STREAM_WIDTH = 16  # at 80 columns the detections (classes, track ids) and the counts by class keep the rest


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1e7 else f"{value:.3g} ms"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def depth(value: int | None) -> str:
    return "?" if value is None else str(value)


def header(stats: Stats, queue_name: str) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    with stats.lock:
        classes = format_detections(stats.classes)
        invalid = stats.invalid
        reasons = ", ".join(f"{k}×{n}" for k, n in stats.invalid_reasons.most_common(3))
        queue_line = f"{depth(stats.queue_depth)} waiting, {depth(stats.in_flight)} in flight   DLQ {depth(stats.dlq_depth)}"
        connection = stats.connection
        notice = stats.notice
        frames, filtered = stats.frames, stats.filtered
        inference = stats.inference_ms
        drops = _total(s.drops for s in stats.streams.values())
        gaps = _total(s.gaps for s in stats.streams.values())
    grid.add_row("frames", f"{frames}  ({stats.fps():.1f}/s)" + (f"  filtered out {filtered}" if filtered else ""))
    grid.add_row("classes", plain(classes))
    grid.add_row("latency", f"p50 {ms(stats.latency(50))}  p95 {ms(stats.latency(95))}   lag behind live {seconds(stats.lag_s())}")
    grid.add_row("worker", f"inference {ms(inference)}   drops {count(drops)}   gaps {count(gaps)}")
    grid.add_row("invalid", plain(f"{invalid}" + (f"  ({reasons})" if reasons else ""), style="red" if invalid else ""))
    grid.add_row("queue", plain(f"{queue_name}: {queue_line}   [{connection}]"))
    if notice:
        grid.add_row("note", plain(notice, style="yellow", limit=300))
    return grid


def count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _total(values) -> int | None:
    """The sum of the known counts; None (shown as -) while no message has carried one."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def streams_table(stats: Stats) -> Table | None:
    """One row per stream, once more than one stream reports; None while there is only one."""
    with stats.lock:
        streams = sorted(stats.streams.items())
        if len(streams) < 2:
            return None
        now, wall = time.monotonic(), time.time()
        figures = [
            (
                name,
                s.frames,
                s.fps(now),
                s.inference_ms,
                percentile(list(s.latencies), 50),
                percentile(list(s.latencies), 95),
                None if s.newest_frame_time is None else max(0.0, wall - s.newest_frame_time),
                s.drops,
                s.gaps,
            )
            for name, s in streams
        ]
    table = Table(expand=True, pad_edge=False, title="streams", title_justify="left")
    table.add_column("stream", no_wrap=True, overflow="ellipsis", max_width=24)
    for column in ("frames", "fps", "inference", "p50", "p95", "lag", "drops", "gaps"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, frames, fps, inference, p50, p95, lag, drops, gaps in figures:
        table.add_row(
            plain(name, limit=100),
            str(frames),
            f"{fps:.1f}",
            Text(ms(inference)),
            Text(ms(p50)),
            Text(ms(p95)),
            Text(seconds(lag)),
            count(drops),
            count(gaps),
        )
    return table


def counts_table(stats: Stats, rows: int = TABLE_ROWS) -> Table | None:
    """Each stream's lines (crossings in and out) and zones (objects inside) from its newest frame's
    `counts`, at most `rows` of them; None while no frame has carried counts."""
    return running_counts_table(stats.counts(), rows)


def running_counts_table(by_stream: dict[str, dict], rows: int = TABLE_ROWS) -> Table | None:
    """Streams' running counts (kinase.frame/1 `counts`, by stream name) as one row per line or zone, at most
    `rows` of them: the counts table of `watch` and `status`; None when no stream has a line or zone."""
    found = [(stream, tally) for stream, counts in by_stream.items() for tally in tallies(counts)]
    if not found:
        return None
    # The compact style of `kinase events`' table: at 80 columns a line's counts by class still fit.
    table = Table(expand=True, box=box.SIMPLE_HEAD, show_edge=False, padding=0, header_style="bold", title="counts", title_justify="left")
    table.add_column("stream", no_wrap=True, overflow="ellipsis", max_width=STREAM_WIDTH)
    table.add_column("line/zone", no_wrap=True, overflow="ellipsis", max_width=STREAM_WIDTH)
    table.add_column("in", justify="right", no_wrap=True)
    table.add_column("out", justify="right", no_wrap=True)
    table.add_column("inside", justify="right", no_wrap=True)
    table.add_column("by class", ratio=1, overflow="ellipsis", no_wrap=True)
    shown = found if len(found) <= rows else found[: max(0, rows - 1)]
    for stream, t in shown:
        table.add_row(
            plain(stream, limit=100),
            plain(t.name, limit=100),
            count(t.into),
            count(t.out),
            count(t.inside),
            plain(t.by_class, limit=300),
        )
    if len(shown) < len(found):
        table.add_row(Text("…"), Text(f"{len(found) - len(shown)} more"), "", "", "", "")
    return table


def frames_table(stats: Stats, rows: int = TABLE_ROWS) -> Table:
    table = Table(expand=True, pad_edge=False)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("stream", no_wrap=True, overflow="ellipsis", max_width=STREAM_WIDTH)
    table.add_column("frame", justify="right", no_wrap=True)
    table.add_column("detections", ratio=1, overflow="ellipsis", no_wrap=True)
    table.add_column("best", justify="right", no_wrap=True)
    table.add_column("latency", justify="right", no_wrap=True)
    with stats.lock:
        latest = list(stats.rows)[-rows:]
    for row in reversed(latest):
        table.add_row(*cells(row))
    return table


def cells(row: Row) -> tuple[Text, ...]:
    """The table cells of one row, all plain text (the session builds them before acking the message)."""
    if row.error is not None:
        return (Text("-"), Text("-"), Text("-"), plain(f"invalid: {row.error}", style="red", limit=300), Text("-"), Text("-"))
    best = "-" if row.best_conf is None else f"{row.best_conf:.2f}"
    return (
        Text(clock(row.frame_time)),
        plain(row.stream, limit=100),
        plain(row.frame),
        plain(row.detections, limit=300),
        Text(best),
        Text(ms(row.latency_ms)),
    )


def live(stats: Stats, queue_name: str, rows: int = TABLE_ROWS) -> Group:
    """The header, the per-stream rows (several streams), the counts (rules in force), then as many frames as fit."""
    parts = [header(stats, queue_name)]
    per_stream = streams_table(stats)
    if per_stream is not None:
        parts.append(per_stream)
        rows -= len(per_stream.rows) + 5  # title, header, three rules
    counts = counts_table(stats, max(4, rows // 2))
    if counts is not None:
        parts.append(counts)
        rows -= len(counts.rows) + 3  # title, header, one rule
    return Group(*parts, frames_table(stats, max(3, rows)))


def line(row: Row) -> str:
    """The plain-text form of a row, for when stdout is not a terminal."""
    if row.error is not None:
        return f"invalid message: {visible(row.error)}"
    best = "-" if row.best_conf is None else f"{row.best_conf:.2f}"
    return (
        f"{clock(row.frame_time)}  {visible(row.stream)}  frame {visible(row.frame)}  {visible(row.detections)}"
        f"  best {best}  latency {ms(row.latency_ms)}  inference {ms(row.inference_ms)}  drops {count(row.drops)}  gaps {count(row.gaps)}"
    )


def summary_text(summary: dict, reason: str) -> Text:
    classes = visible(format_detections(summary["classes"]), limit=300) if summary["classes"] else "-"
    latency = summary["latency_ms"]
    parts = [
        f"watch ended ({reason}): {summary['frames']} frames, {summary['fps']:.1f} frames/s",
        f"  classes: {classes}",
        f"  latency: p50 {ms(latency['p50'])}, p95 {ms(latency['p95'])}",
        f"  invalid: {summary['invalid']}, filtered out: {summary['filtered']}",
    ]
    if summary["saved"] or summary["save_errors"]:
        parts.append(f"  saved: {summary['saved']}, save errors: {summary['save_errors']}")
    for stream, counts in summary["counts"].items():
        described = ", ".join(tally_text(t) for t in tallies(counts)) or "-"
        parts.append(f"  counts {visible(stream, limit=100)}: {visible(described, limit=1000)}")
    return Text("\n".join(parts))


def tally_text(t: Tally) -> str:
    """`door in 5 out 3 (in person×4 car×1 out person×3)`, `bay inside 2 (person×2)`: untrusted, for `visible`."""
    figures = f"in {t.into} out {t.out}" if t.kind == "line" else f"inside {t.inside}"
    return f"{t.name} {figures}" + (f" ({t.by_class})" if t.by_class != "-" else "")

"""The fleet's two tables, drawn one way wherever they are shown: its workers (`fleet status`, `status`) and the
environment's streams with their readers (`fleet status`, `stream ls`).

Worker ids, task definitions and stream names are untrusted text (anyone who can create a stream or run a worker
names them): every one goes through `plain`, shown inert, never as markup or escape sequences.
"""

from __future__ import annotations

from rich import box
from rich.table import Table

from kinase_cli.ui.text import middle, plain


def workers(fleet: dict, **table) -> Table:
    """`fleet`: workflows/fleet.status's answer; each worker with its pid (local) or task, the revision it runs
    and the streams it holds. `table`: Rich Table options (title, edges)."""
    shown = Table(**table)
    shown.add_column("worker", overflow="fold")
    shown.add_column("pid" if fleet["local"] else "task", no_wrap=True)
    shown.add_column("revision", no_wrap=True)
    shown.add_column("streams", overflow="fold")
    for w in fleet["workers"]:
        where = str(w.get("pid") or w.get("task_id") or ("(not listed)" if w.get("listed") is False else ""))
        revision = (w.get("task_definition") or "").rsplit("/", 1)[-1]
        shown.add_row(plain(w.get("worker_id") or ""), where, plain(revision), plain(", ".join(w["streams"])))
    return shown


def streams(rows: list[dict], media: bool = False, **table) -> Table:
    """`rows`: workflows/streams.listing's; each stream's reader, lag, fps and checkpoint, with `media` also its
    Kinesis Video status and retention. `table`: Rich Table options (title)."""
    # 80 columns: a compact box; the stream keeps its width, the owner and the time (UTC) fold, a fragment number is cut in its middle (--json has it whole)
    shown = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), pad_edge=False, **table)
    owner = min(24, max([8] + [len(r["owner"] or "") for r in rows]))
    shown.add_column("stream", no_wrap=True)
    for column in (("status",) if media else ()) + ("owner", "lag", "fps", "fragment", "at"):
        shown.add_column(column, no_wrap=column not in ("owner", "at"), overflow="fold", min_width=owner if column == "owner" else None)
    for r in rows:
        lag = "" if r["lag_ms"] is None else f"{r['lag_ms'] / 1000:.1f} s"
        fps = "" if r["fps"] is None or not r["owner"] else f"{r['fps']:.1f}"
        facts = (f"{r['status'] or ''} {r['retention_hours']}h",) if media else ()
        shown.add_row(
            plain(r["name"] + (" (adopted)" if r.get("adopted") else "")),
            *facts,
            plain(r["owner"] or ""),
            lag,
            fps,
            plain(middle(r["checkpoint_fragment"] or "", 4)),
            str(r["checkpoint_at"] or "")[5:16].replace("T", " "),
        )
    return shown

"""`kinase stream`: feed video into the Kinesis Video stream (PutMedia) and look at streams."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from infra.naming import DEFAULT_ENV
from kinase_cli import options
from kinase_cli.aws import kvs_put, outputs
from kinase_cli.options import Env, Json, Local, Profile, Region
from kinase_cli.ui import console, jsonout
from worker.contract import iso

stream = typer.Typer(
    help="Feed video into the Kinesis Video stream and inspect streams.",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n  kinase stream put video.mp4\n\n  kinase stream put cam.mkv --realtime --loop --local\n\n"
        "  kinase stream ls\n\n  kinase stream describe --json"
    ),
)

StreamOpt = Annotated[
    Optional[str],
    typer.Option("--stream", "-s", help="Stream name (default: the stack's stream, output StreamName).", show_default=False),
]


def _stream_name(target, name: Optional[str]) -> str:
    if name:
        return name
    return outputs.read(target, required=("stream",))["StreamName"]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


@stream.command(
    "put",
    epilog=(
        "Examples:\n\n  kinase stream put video.mp4                      upload as fast as acknowledged\n\n"
        "  kinase stream put video.mp4 --realtime --loop   a live camera stand-in (Ctrl-C ends it cleanly)\n\n"
        "  kinase stream put clip.webm --stream my-stream --local --json"
    ),
)
def put(
    file: Annotated[
        Path, typer.Argument(help="Video file (mp4, mkv, webm, ...); H.264 is copied, other codecs re-encoded.", show_default=False)
    ],
    stream_name: StreamOpt = None,
    loop: Annotated[bool, typer.Option("--loop", help="Repeat the file; timestamps keep increasing.")] = False,
    loops: Annotated[int, typer.Option("--loops", min=0, help="With --loop: stop after this many passes (0: until interrupted).")] = 0,
    realtime: Annotated[bool, typer.Option("--realtime", help="Send at the video's frame rate, like a camera.")] = False,
    json_: Json = False,
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = DEFAULT_ENV,
) -> None:
    """Upload a video file to the Kinesis Video stream with PutMedia, one fragment per GOP.

    Shows fragments sent and persisted while it runs, fails on the first ERROR acknowledgement,
    and prints a summary. SIGINT / SIGTERM end a --loop upload cleanly after the current frame.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    kvs_put.probe(file)
    target = options.target(profile, region, local, env)
    name = _stream_name(target, stream_name)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console.err, transient=True)
    task = progress.add_task(f"PutMedia {file.name} -> {name}")
    clock = {"t0": None}

    def show(stats, acks) -> None:
        clock["t0"] = clock["t0"] or time.monotonic()
        rate = stats.bytes / max(time.monotonic() - clock["t0"], 1e-3)
        progress.update(
            task,
            description=(
                f"PutMedia {file.name} -> {name}: {stats.frames} frames, {stats.clusters_written} fragments sent, "
                f"{acks.count('PERSISTED')} persisted, {_size(stats.bytes)} ({_size(rate)}/s)"
            ),
        )

    try:
        with progress:
            result = kvs_put.put_file(
                target,
                file,
                name,
                loops=(loops if loop else 1),
                realtime=realtime,
                stop=stop,
                on_progress=show,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = result.summary()
    if json_:
        jsonout.emit("stream put", summary)
        return
    what = "re-encoded to H.264" if summary["reencoded"] else "H.264 copied"
    console.out.print(
        f"put {summary['frames']} frames ({summary['media_seconds']:.1f} s, {what}) to {name} in "
        f"{summary['fragments']} fragments, {summary['persisted']} persisted, {_size(summary['bytes'])} "
        f"in {summary['elapsed_seconds']:.1f} s",
        highlight=False,
    )
    if summary["last_fragment_number"]:
        console.out.print(f"fragments {summary['first_fragment_number']} .. {summary['last_fragment_number']}", highlight=False)


def _all_streams(client, prefix: Optional[str]) -> list[dict]:
    found, token = [], None
    while True:
        kwargs = {"MaxResults": 10000}
        if prefix:
            kwargs["StreamNameCondition"] = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": prefix}
        if token:
            kwargs["NextToken"] = token
        page = client.list_streams(**kwargs)
        found += page.get("StreamInfoList", [])
        token = page.get("NextToken")
        if not token:
            return found


def _info(s: dict) -> dict:
    created = s.get("CreationTime")
    return {
        "name": s["StreamName"],
        "arn": s["StreamARN"],
        "status": s.get("Status"),
        "retention_hours": s.get("DataRetentionInHours", 0),
        "media_type": s.get("MediaType"),
        "created_at": iso(created) if created else None,
        "version": s.get("Version"),
        "kms_key_id": s.get("KmsKeyId"),
    }


@stream.command("ls", epilog="Examples:\n\n  kinase stream ls\n\n  kinase stream ls --all --json")
def ls(
    all_: Annotated[bool, typer.Option("--all", help="Every stream in the account and region, not only this environment's.")] = False,
    json_: Json = False,
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = DEFAULT_ENV,
) -> None:
    """List Kinesis Video streams (by default those named for this environment, kinase-ENV-*)."""
    from rich.table import Table

    target = options.target(profile, region, local, env)
    prefix = None if all_ else f"kinase-{env}-"
    streams = [_info(s) for s in _all_streams(target.client("kinesisvideo"), prefix)]
    if json_:
        jsonout.emit("stream ls", {"streams": streams})
        return
    if not streams:
        console.info(f"no streams{'' if all_ else f' named {prefix}*'} (see `kinase deploy{target.hint_flag()}`)")
        return
    table = Table(title=f"{len(streams)} Kinesis Video stream(s)")
    table.add_column("name", overflow="fold")
    for column in ("status", "retention (h)", "media type", "created"):
        table.add_column(column, no_wrap=True)
    for s in streams:
        created = str(s["created_at"] or "")[:19].replace("T", " ")
        table.add_row(s["name"], s["status"] or "", str(s["retention_hours"]), s["media_type"] or "", created)
    console.out.print(table)


@stream.command("describe", epilog="Examples:\n\n  kinase stream describe\n\n  kinase stream describe my-stream --json")
def describe(
    name: Annotated[Optional[str], typer.Argument(help="Stream name (default: the stack's stream).", show_default=False)] = None,
    json_: Json = False,
    profile: Profile = None,
    region: Region = None,
    local: Local = False,
    env: Env = DEFAULT_ENV,
) -> None:
    """Show one stream: ARN, status, retention, media type, and its media endpoints."""
    from rich.table import Table

    target = options.target(profile, region, local, env)
    client = target.client("kinesisvideo")
    stream_name = _stream_name(target, name)
    info = _info(client.describe_stream(StreamName=stream_name)["StreamInfo"])
    info["endpoints"] = {api.lower(): kvs_put.data_endpoint(client, stream_name, api) for api in ("PUT_MEDIA", "GET_MEDIA")}
    if json_:
        jsonout.emit("stream describe", info)
        return
    table = Table(title=f"stream {stream_name}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.items():
        if key == "endpoints":
            for api, url in value.items():
                table.add_row(f"{api} endpoint", url)
        else:
            table.add_row(key, "" if value is None else str(value))
    console.out.print(table)


def register(app) -> None:
    app.add_typer(stream, name="stream")

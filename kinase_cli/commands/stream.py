"""`kinase stream`: feed video into the Kinesis Video stream (PutMedia) and look at streams."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from kinase_cli import interrupts
from kinase_cli.aws import kvs_put, outputs
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, Yes, with_target
from kinase_cli.ui import console, fleet_tables, jsonout
from kinase_cli.ui.text import visible
from kinase_cli.workflows import streams as streams_workflow

stream = typer.Typer(
    help="Feed video into the Kinesis Video stream and inspect streams.",
    no_args_is_help=True,
    epilog=(
        "Examples:\n\n  kinase stream put video.mp4\n\n  kinase stream put cam.mkv --realtime --loop --local\n\n"
        "  kinase stream create cam1\n\n  kinase stream ls\n\n  kinase stream describe --json"
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


def _report(command: str, result: dict, json_: bool, line: str) -> None:
    """create, adopt and rm: the JSON envelope, or one line naming the stream (as plain text: names are untrusted)."""
    if json_:
        jsonout.emit(f"stream {command}", result)
    else:
        console.out.print(Text(line))


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
@with_target
def put(
    file: Annotated[
        Path, typer.Argument(help="Video file (mp4, mkv, webm, ...); H.264 is copied, other codecs re-encoded.", show_default=False)
    ],
    stream_name: StreamOpt = None,
    loop: Annotated[bool, typer.Option("--loop", help="Repeat the file; timestamps keep increasing.")] = False,
    loops: Annotated[int, typer.Option("--loops", min=0, help="With --loop: stop after this many passes (0: until interrupted).")] = 0,
    realtime: Annotated[bool, typer.Option("--realtime", help="Send at the video's frame rate, like a camera.")] = False,
    audio: Annotated[
        bool, typer.Option("--audio/--no-audio", help="Send the file's audio track beside the video (AAC or G.711, copied).")
    ] = True,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Upload a video file to the Kinesis Video stream with PutMedia, one fragment per GOP.

    Shows fragments sent and persisted while it runs, fails on the first ERROR acknowledgement,
    and prints a summary. SIGINT / SIGTERM end a --loop upload cleanly after the current frame.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    kvs_put.probe(file)
    name = _stream_name(target, stream_name)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: (interrupts.arm_watchdog(), stop.set())) for sig in (signal.SIGINT, signal.SIGTERM)}
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
                audio=audio,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = result.summary()
    if json_:
        jsonout.emit("stream put", summary)
        return
    what = "re-encoded to H.264" if summary["reencoded"] else "H.264 copied"
    if summary["audio"]:
        what += f", {summary['audio']} audio copied"
    if summary["audio_dropped"] and summary["audio_dropped"] != "--no-audio":
        console.err.print(
            f"note: the {summary['audio_dropped']} audio track was not sent (Kinesis Video takes AAC or G.711)", highlight=False
        )
    console.out.print(
        f"put {summary['frames']} frames ({summary['media_seconds']:.1f} s, {what}) to {name} in "
        f"{summary['fragments']} fragments, {summary['persisted']} persisted, {_size(summary['bytes'])} "
        f"in {summary['elapsed_seconds']:.1f} s",
        highlight=False,
    )
    if summary["last_fragment_number"]:
        console.out.print(f"fragments {summary['first_fragment_number']} .. {summary['last_fragment_number']}", highlight=False)


@stream.command("ls", epilog="Examples:\n\n  kinase stream ls\n\n  kinase stream ls --all --json")
@with_target
def ls(
    all_: Annotated[bool, typer.Option("--all", help="Every stream in the account and region, not only this environment's.")] = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """List the environment's streams (named kinase-ENV-*, or adopted) with the fleet worker reading each, its lag and fps."""
    rows = streams_workflow.listing(target, all_)
    if json_:
        jsonout.emit("stream ls", {"streams": rows})
        return
    if not rows:
        console.info(f"no streams of environment {target.env} (create one with `kinase stream create NAME{target.hint_flag()}`)")
        return
    console.out.print(fleet_tables.streams(rows, media=True, title=f"{len(rows)} Kinesis Video stream(s)"))


@stream.command(
    "create",
    epilog="Examples:\n\n  kinase stream create cam1                 creates kinase-dev-cam1\n\n  kinase stream create lobby --retention-hours 48 --local",
)
@with_target
def create(
    name: Annotated[str, typer.Argument(help="Stream name; the environment's prefix kinase-ENV- is added.", show_default=False)],
    retention_hours: Annotated[int, typer.Option("--retention-hours", min=1, help="Hours Kinesis Video keeps the media.")] = 24,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Create a stream of this environment (its prefix and tag), with a lease the fleet picks up at once."""
    result = streams_workflow.create(target, name, retention_hours)
    _report("create", result, json_, f"created {visible(result['name'])}")
    if not json_:
        console.info(f"next: kinase stream put VIDEO --stream {result['name']}{target.hint_flag()}")


@stream.command("adopt", epilog="Examples:\n\n  kinase stream adopt lobby-camera-07")
@with_target
def adopt(
    name: Annotated[str, typer.Argument(help="An existing stream whose name cannot change (used as is).", show_default=False)],
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Make an existing camera stream part of this environment: tag it kinase:env=ENV (the task role reads
    streams with that tag) and give it a lease, so the fleet reads it."""
    result = streams_workflow.adopt(target, name)
    _report("adopt", result, json_, f"adopted {visible(result['name'])} into environment {target.env}")


@stream.command("rm", epilog="Examples:\n\n  kinase stream rm cam1\n\n  kinase stream rm cam1 --yes --local")
@with_target
def rm(
    name: Annotated[str, typer.Argument(help="Stream name (with or without the environment's prefix).", show_default=False)],
    yes: Yes = False,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Delete a stream of this environment, its media and its lease (the fleet worker reading it stops).
    An adopted stream is not deleted: only its lease goes."""
    from kinase_cli.ui.confirm import confirm

    confirm(f"Delete stream {name} of environment {target.env} and all its media? This cannot be undone.", yes)
    result = streams_workflow.remove(target, name)
    what = "deleted" if result["deleted"] else "released (the adopted stream itself is kept)"
    _report("rm", result, json_, f"{visible(result['name'])} {what}")


@stream.command("describe", epilog="Examples:\n\n  kinase stream describe\n\n  kinase stream describe my-stream --json")
@with_target
def describe(
    name: Annotated[
        Optional[str],
        typer.Argument(help="One of the environment's streams, with or without its prefix (default: the stack's).", show_default=False),
    ] = None,
    json_: Json = False,
    *,
    target: Target,
) -> None:
    """Show one of the environment's streams: ARN, status, retention, media type, and its media endpoints.
    Another environment's stream is refused (its name may even start with this environment's prefix)."""
    from rich.table import Table

    client = target.client("kinesisvideo")
    stream_name = streams_workflow.resolve(client, target.env, name) if name else _stream_name(target, None)
    info = streams_workflow.info(streams_workflow.owned(target, client, stream_name))
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

"""`kinase cost`: what streams would cost on AWS, line by line, before anything is deployed."""

from __future__ import annotations

from typing import Annotated

import typer

from infra import naming
from kinase_cli.aws import cost as costs
from kinase_cli.options import Json, Region
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.errors import KinaseError
from worker.settings import var

EPILOG = f"""\
Examples:

  kinase cost                                   one stream, 10 frames/s, every frame uploaded
  kinase cost --streams 9                       9 streams on 3 fleet workers (4 streams a worker)
  kinase cost --streams 8 --hours 12 --upload every:10
  kinase cost --fps 5 --upload detections --detected-share 0.1 --json
  kinase cost --save --web                      and an operator downloading every frame twice

Every figure is an ESTIMATE from on-demand list prices kept in kinase (dated, with their source, per region; other regions are priced as {costs.FALLBACK_REGION} and say so): no free tier, no Savings Plans, no tax. The streams run on the fleet as it packs them: ceil(streams / streams per worker) worker tasks. Not counted: VPC flow logs, GPU instances, message bodies `kinase watch` receives. The S3 PUTs of uploaded frames are usually the largest line: `--upload` is the worker's {var("upload")} policy.
"""


def cost(
    fps: Annotated[float, typer.Option("--fps", min=0.0, help="Frames each worker processes per second.")] = costs.DEFAULT_FPS,
    streams: Annotated[int, typer.Option("--streams", min=0, help="Streams, packed on fleet worker tasks (--streams-per-worker).")] = 1,
    streams_per_worker: Annotated[
        int,
        typer.Option(
            "--streams-per-worker",
            min=1,
            max=naming.FLEET_MAX_STREAMS_PER_WORKER,
            help="Streams one fleet worker task reads (the fleet's scaling target by default).",
        ),
    ] = naming.FLEET_STREAMS_PER_WORKER,
    hours: Annotated[float, typer.Option("--hours", min=0.0, max=24.0, help="Hours a day the streams run.")] = 24.0,
    upload: Annotated[
        str,
        typer.Option("--upload", help=f"Which processed frames go to S3 (the worker's {var('upload')}): all, detections, every:N, none."),
    ] = "all",
    detected_share: Annotated[
        float, typer.Option("--detected-share", min=0.0, max=1.0, help="With --upload detections: share of frames with a detection.")
    ] = 1.0,
    frame_kb: Annotated[float, typer.Option("--frame-kb", min=0.0, help="Size of one annotated JPEG in kB.")] = costs.DEFAULT_FRAME_KB,
    bitrate_kbps: Annotated[
        float, typer.Option("--bitrate-kbps", min=0.0, help="The camera's video bitrate into Kinesis Video.")
    ] = costs.DEFAULT_BITRATE_KBPS,
    cpu: Annotated[int, typer.Option("--cpu", help="Task CPU units (1024 = 1 vCPU).")] = costs.Workload.cpu,
    memory: Annotated[int, typer.Option("--memory", help="Task memory in MiB (a valid Fargate pair with --cpu).")] = costs.Workload.memory,
    save: Annotated[
        bool, typer.Option("--save", help="`kinase watch --save` runs: every uploaded frame downloaded over the internet.")
    ] = False,
    web: Annotated[
        bool, typer.Option("--web", help="The web view (`watch --web`) runs: the frames it shows downloaded, metrics read.")
    ] = False,
    region: Region = None,
    json_: Json = False,
) -> None:
    """Estimate the AWS cost of streams: per stream-hour, per day and per month, line by line."""
    try:
        costs.upload_share(upload, detected_share)
        workload = costs.Workload(
            fps=fps,
            upload=upload,
            detected_share=detected_share,
            frame_kb=frame_kb,
            bitrate_kbps=bitrate_kbps,
            cpu=cpu,
            memory=memory,
            streams_per_worker=streams_per_worker,
        )
        estimate = costs.estimate(region or costs.FALLBACK_REGION, workload, streams=streams, hours_per_day=hours, save=save, web=web)
    except ValueError as exc:
        raise KinaseError(str(exc), "see `kinase cost --help`") from None
    if json_:
        jsonout.emit("cost", estimate.as_dict())
        return
    show(estimate)


def show(estimate: costs.Estimate) -> None:
    from rich.table import Table
    from rich.text import Text

    day = estimate.streams * estimate.hours_per_day
    table = Table("item", "per stream-hour", "$/unit", "$/stream-hour", "$/day", title=Text(f"ESTIMATE, {estimate.where()}"))
    for column in table.columns[1:]:
        column.justify, column.no_wrap = "right", True
    for line in estimate.lines:
        table.add_row(
            Text(line.item),
            f"{_amount(line.quantity)} {line.unit}",
            f"{line.unit_usd:.3g}",
            f"{line.usd_per_stream_hour:.5f}",
            f"{line.usd_per_stream_hour * day:.2f}",
        )
    table.add_row(Text("total", style="bold"), "", "", f"{estimate.usd_per_stream_hour:.5f}", f"{estimate.usd_per_day:.2f}")
    console.out.print(table)
    console.out.print(Text(estimate.text()), soft_wrap=True)
    console.out.print(Text(f"prices as of {estimate.prices.as_of} from {estimate.prices.source}"), soft_wrap=True, style="dim")


def _amount(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.4g}"


def register(app: typer.Typer) -> None:
    app.command("cost", epilog=EPILOG)(cost)

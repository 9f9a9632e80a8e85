"""`kinase watch`: tail the results queue in a live table, as JSON lines, or as plain lines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from kinase_cli.aws import outputs
from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.ui import console
from kinase_cli.ui.errors import KinaseError
from kinase_cli.watch.messages import Filter
from kinase_cli.watch.session import Options, Resources, Session
from kinase_cli.watch.view import summary_text

WEB_PORT = 8765
WEB_HOST = "127.0.0.1"

EPILOG = """\
Examples:

  kinase watch                                 # live table until Ctrl+C
  kinase watch --local --count 100             # stop after 100 frames, print a summary
  kinase watch --json | jq -c '{frame: .frame_index, n: .detections_count}'
  kinase watch --class person --min-conf 0.6 --save frames/
  kinase watch --peek --idle-timeout 5         # look at what is queued without consuming it
  kinase watch --local --web --open            # the table, and one tile per camera in the browser

Every valid message is consumed (deleted) once handled, including frames the filters hide; use --peek to leave messages on the queue.

Messages that break the contract, or that point at another bucket, are counted and left on the queue; after the queue's maxReceiveCount receives SQS moves them to the dead-letter queue (see `kinase dlq ls`).
"""


@with_target
def watch(
    json_: Json = False,
    save: Annotated[
        Optional[Path],
        typer.Option("--save", metavar="DIR", help="Download each shown frame's annotated JPEG into DIR.", show_default=False),
    ] = None,
    classes: Annotated[
        Optional[list[str]],
        typer.Option("--class", metavar="NAME", help="Show only detections of this class (repeatable).", show_default=False),
    ] = None,
    min_conf: Annotated[float, typer.Option("--min-conf", min=0.0, max=1.0, help="Show only detections at least this confident.")] = 0.0,
    stream: Annotated[Optional[str], typer.Option("--stream", help="Show only frames of this stream.", show_default=False)] = None,
    count: Annotated[Optional[int], typer.Option("--count", "-n", min=1, help="Stop after N shown frames.", show_default=False)] = None,
    idle_timeout: Annotated[
        Optional[float],
        typer.Option("--idle-timeout", metavar="SECONDS", min=0.1, help="Stop after this long without a new message.", show_default=False),
    ] = None,
    peek: Annotated[
        bool,
        typer.Option("--peek", help="Show without deleting: messages go back on the queue when the watch ends (each costs one receive)."),
    ] = False,
    receivers: Annotated[int, typer.Option("--receivers", min=1, max=16, help="Most parallel long-polls while the queue is deep.")] = 4,
    web: Annotated[
        bool, typer.Option("--web", help="Also serve a live page: one tile per stream with its latest annotated frame and charts.")
    ] = False,
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port of the --web page (0: any free port).")
    ] = WEB_PORT,
    host: Annotated[
        str,
        typer.Option(
            "--host", metavar="ADDRESS", help="Address the --web page binds to; anything but loopback requires the token printed at start."
        ),
    ] = WEB_HOST,
    open_: Annotated[bool, typer.Option("--open", help="Open the --web page in the default browser.")] = False,
    *,
    target: Target,
) -> None:
    """Tail the pipeline's results: one row per frame, per-class totals, fps, latency, lag, queue depth.

    Ends on --count, --idle-timeout or Ctrl+C, always with a summary on stderr and exit code 0.
    """
    if not web and (port != WEB_PORT or host != WEB_HOST or open_):
        raise KinaseError("--port, --host and --open belong to the web view", "add --web")
    out = outputs.read(target, required=("storage",))
    resources = Resources(
        sqs=target.client("sqs"),
        s3=target.client("s3"),
        queue_url=out["ResultsQueueUrl"],
        dlq_url=out.get("DeadLetterQueueUrl"),
        bucket=out["FramesBucketName"],
    )
    filter_ = Filter(classes=frozenset(classes or ()), min_conf=min_conf, stream=stream)
    opts = Options(json=json_, save=save, filter=filter_, count=count, idle_timeout=idle_timeout, peek=peek, receivers=receivers)
    if not web:
        summary, reason = Session(resources, opts, console.out, console.err).run()
    else:
        from kinase_cli.web.server import serving

        with serving(
            resources.s3,
            resources.bucket,
            resources.queue_url,
            cloudwatch=target.client("cloudwatch"),
            detections=filter_.detections,
            host=host,
            port=port,
        ) as (
            hub,
            view,
        ):
            console.err.print(f"web view: {view.url}", markup=False, highlight=False, soft_wrap=True)
            if open_:
                import webbrowser

                webbrowser.open(view.url)
            session = Session(resources, replace(opts, on_frame=hub.frame), console.out, console.err)
            hub.stats = session.stats
            summary, reason = session.run()
    console.info(summary_text(summary, reason))


def register(app: typer.Typer) -> None:
    app.command("watch", epilog=EPILOG)(watch)

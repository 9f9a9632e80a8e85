"""`kinase demo`: the whole pipeline on the local stack, in one command, with no network or account.

Every step is the same code path an operator uses: `local up`, `deploy --local` (the real cdk
CLI), `stream put` (PutMedia into the local Kinesis Video endpoint), `run-task --local` (the real
worker reading GetMedia), `watch` (the live table) and `events` (the events queue). The video is generated
with known ground truth (event_samples.events_video): every shape's box in every frame, and every crossing of
its counting line and every entry, exit and dwell in its zone. The demo applies the video's rules before the
worker starts, so the summary can say how many of the shapes the detector really found and whether the
published events count exactly what happened.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from kinase_cli import paths
from kinase_cli.aws import kvs_put, outputs
from kinase_cli.aws.target import Target
from kinase_cli.local import stack
from kinase_cli.options import Json
from kinase_cli.runners import proc
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.errors import KinaseError, translate
from kinase_cli.ui.text import join, plain
from kinase_cli.watch.session import Options, Resources, Session
from kinase_cli.web import report
from kinase_cli.workflows import demo_events, deploy, images, scoring, worker_env
from kinase_cli.workflows import local as local_workflow

MODEL = Path("models") / "shapes-yolo11n.onnx"
IMGSZ = 320
VIDEO_SIZE = (640, 480)  # the shapes model finds every object of the events video at this size (event_samples)
SEED = 2
STEPS = 7
WORKER_IDLE_EXIT_S = 20
WATCH_IDLE_TIMEOUT_S = 45

EPILOG = """\
Examples:

  kinase demo                      # about a minute: local stack, deploy, rules, stream, worker, live table, events
  kinase demo --frames 300 --fps 30
  kinase demo --keep               # leave the local stack running, then: kinase status --local
  kinase demo --save demo-out/ --json

Runs with no network, no AWS account and no Docker. Without --keep, it stops the local stack it
started (a stack that was already running is left as it was).
"""


@contextmanager
def _step(number: int, title: str):
    """Name the step that breaks, so a failure says where the pipeline stopped."""
    console.step(f"[{number}/{STEPS}] {title}")
    try:
        yield
    except KinaseError as exc:
        raise KinaseError(f"demo step {number} ({title}) failed: {exc.message}", exc.hint, exc.exit_code) from None
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise KinaseError(f"demo step {number} ({title}) failed: {error.message}", error.hint) from None


def demo(
    frames: Annotated[
        int,
        typer.Option("--frames", min=15, max=3000, help="Length of the generated video, in frames (15 s or more has every event type)."),
    ] = 150,
    fps: Annotated[int, typer.Option("--fps", min=1, max=60, help="Frame rate of the generated video (it is streamed in real time).")] = 10,
    save: Annotated[
        Optional[Path],
        typer.Option(
            "--save", metavar="DIR", help="Where to keep the video, annotated frames, worker log and contact sheet.", show_default=False
        ),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the local stack running afterwards.")] = False,
    port: Annotated[int, typer.Option("--port", help="Port of the moto server if the local stack must be started.")] = 4566,
    kvs_port: Annotated[int, typer.Option("--kvs-port", help="Port of the local Kinesis Video endpoint if it must be started.")] = 4567,
    json_: Json = False,
) -> None:
    """Run the whole pipeline offline: local stack, deploy, stream a video, run the worker, watch every frame arrive, count the events."""
    workdir = (save or paths.local_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started_here = stack.running_state() is None
    try:
        result = _run(Target(local=True), workdir, frames, fps, port, kvs_port, json_)
    finally:
        if started_here and not keep:
            console.step("stopping the local stack (use --keep to leave it running)")
            stack.stop()
    _report(result, json_)
    if keep:
        console.info("the local stack is still running: kinase status --local · kinase watch --local · kinase local down")


def _run(target, workdir: Path, frames: int, fps: int, port: int, kvs_port: int, json_: bool) -> dict:
    from kinase_cli.workflows import event_samples

    with _step(1, "local stack (moto server + local Kinesis Video endpoint)"):
        local_workflow.start(port, kvs_port)
    with _step(2, "deploy the stacks through the cdk CLI, register the source tree as the image (push-image --source-tree)"):
        deploy.deploy_stacks(target)
        out = outputs.read(target, required=("storage", "stream", "compute"))
        images.push_source_tree(target, out)  # no Docker here: the local worker runs this tree, which is its image
    with _step(3, f"generate a {frames}-frame video with known shapes, line crossings and zone visits"):
        video = event_samples.events_video(workdir / "demo.mp4", fps=fps, duration=frames / fps, size=VIDEO_SIZE, seed=SEED, gop=fps)
    with _step(4, "apply the video's rules (line door, zone bay) and start the worker on the stream (rules apply, run-task --local)"):
        demo_events.apply_rules(target, out, video.rules)
        worker = _start_worker(out["StreamName"], workdir, frames)
    try:
        with _step(5, f"stream the video into {out['StreamName']} (PutMedia, real time)"):
            put = _Put(target, video.path, out["StreamName"])
        with _step(6, "watch every frame arrive (live table)"):
            messages, summary = _watch(target, out, workdir, frames, json_, worker)
        put.join()
        code = _wait_worker(worker, workdir)
    except BaseException:
        _stop_worker(worker)
        raise
    with _step(7, "read the events the worker published (kinase events)"):
        events, drained = demo_events.read(target, out)
    start = put.result.producer_start_timestamp
    result = {
        "workdir": str(workdir),
        "video": str(video.path),
        "frames_in_video": frames,
        "stream": out["StreamName"],
        "put": put.result.summary(),
        "worker_exit_code": code,
        "watch": summary,
        "accuracy": scoring.accuracy(messages, video.frames, start, fps),
        "events": {
            **scoring.event_counts(events, video.counts, out["StreamName"], start, fps, frames),
            "duplicates": drained["duplicates"],
            "invalid": drained["invalid"],
        },
        "saved_frames": str(workdir / "frames"),
        "contact_sheet": scoring.contact_sheet(messages, workdir),
    }
    result["report"] = str(
        report.write(
            workdir / "report.html", messages=messages, accuracy=result["accuracy"], contact_sheet=result["contact_sheet"], summary=summary
        )
    )
    return result


def _start_worker(stream: str, workdir: Path, frames: int):
    argv = [
        sys.executable,
        "-m",
        "kinase_cli",
        "run-task",
        "--local",
        "--stream",
        stream,
        # from its start, stopping after the clip
        *worker_env.run_task_args(
            model=paths.PROJECT_ROOT / MODEL, imgsz=IMGSZ, start="EARLIEST", max_frames=frames, idle_exit=WORKER_IDLE_EXIT_S
        ),
    ]
    return proc.start_background(argv, log_file=workdir / "worker.log", cwd=paths.PROJECT_ROOT)


def _stop_worker(worker) -> None:
    """SIGINT to the run-task process group: the worker flushes, checkpoints and exits."""
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except Exception:
            os.killpg(worker.pid, signal.SIGKILL)


def _wait_worker(worker, workdir: Path) -> int:
    try:
        code = worker.wait(timeout=WORKER_IDLE_EXIT_S + 30)
    except Exception:
        _stop_worker(worker)
        code = worker.returncode
    if code != 0:
        raise KinaseError(f"the worker exited with code {code}", f"see {workdir / 'worker.log'}")
    return code


class _Put:
    """`stream put --realtime` on a thread, so the table fills while the video is still streaming."""

    def __init__(self, target, video: Path, stream: str):
        kvs_put.probe(video)
        self.result = None
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(kvs_put, target, video, stream), daemon=True)
        self.thread.start()

    def _run(self, kvs_put, target, video: Path, stream: str) -> None:
        try:
            self.result = kvs_put.put_file(target, video, stream, realtime=True, stop=self.stop)
        except BaseException as exc:  # re-raised on the main thread by join()
            self.error = exc

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise KinaseError(f"demo step 5 (stream put) failed: {self.error}")


def _watch(target, out, workdir: Path, frames: int, json_: bool, worker) -> tuple[list[dict], dict]:
    """Watch until every frame has arrived; a worker that fails ends the watch at once, not after the idle timeout.

    The web view (`watch --web`) runs beside the table on a free loopback port for as long as the watch does.
    """
    from kinase_cli.web.server import serving

    messages: list[dict] = []
    resources = Resources(
        sqs=target.client("sqs"),
        s3=target.client("s3"),
        queue_url=out["ResultsQueueUrl"],
        dlq_url=out.get("DeadLetterQueueUrl"),
        bucket=out["FramesBucketName"],
    )
    shown_on = console.err if json_ else console.out
    with serving(resources.s3, resources.bucket, resources.queue_url, cloudwatch=target.client("cloudwatch")) as (hub, view):
        console.err.print(f"web view: {view.url}", markup=False, highlight=False, soft_wrap=True)

        def on_frame(message: dict) -> None:
            messages.append(message)
            hub.frame(message)

        opts = Options(save=workdir / "frames", count=frames, idle_timeout=WATCH_IDLE_TIMEOUT_S, on_frame=on_frame, plain_lines=False)
        session = Session(resources, opts, shown_on, console.err)
        hub.stats = session.stats

        def end_if_worker_fails() -> None:
            if worker.wait() != 0:
                session.stop.set()

        threading.Thread(target=end_if_worker_fails, daemon=True).start()
        summary, reason = session.run()
    if summary["frames"] < frames and worker.poll() not in (None, 0):
        raise KinaseError(f"the worker exited with code {worker.returncode}", f"see {workdir / 'worker.log'}")
    if summary["frames"] < frames:
        raise KinaseError(
            f"only {summary['frames']} of {frames} frames arrived ({reason})",
            f"see {workdir / 'worker.log'} and `kinase logs --local`",
        )
    return messages, summary


def _report(result: dict, json_: bool) -> None:
    if json_:
        jsonout.emit("demo", result)
        return
    from rich.table import Table

    watch, acc = result["watch"], result["accuracy"]
    table = Table(title="kinase demo", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    p50, p95 = watch["latency_ms"]["p50"], watch["latency_ms"]["p95"]
    rows = [
        ("frames", f"{watch['frames']} of {result['frames_in_video']} streamed ({result['put']['fragments']} fragments, all persisted)"),
        ("detections", "  ".join(f"{k}×{v}" for k, v in watch["classes"].items()) or "-"),
        ("ground truth", f"found {acc['found']} of {acc['truth_objects']} shapes (recall {acc['recall']}, precision {acc['precision']})"),
        *_count_rows(result["events"]),
        ("events", _items(result["events"]["types"])),
        ("throughput", f"{watch['fps']} frames/s"),
        ("latency", f"median {p50:.0f} ms, p95 {p95:.0f} ms (producer to queue)" if p50 is not None else "-"),
        ("annotated frames", result["saved_frames"]),
        ("contact sheet", result["contact_sheet"] or "-"),
        ("report", result["report"]),
        ("worker log", str(Path(result["workdir"]) / "worker.log")),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.out.print(table)


def _count_rows(events: dict) -> list[tuple[Text, Text]]:
    """Each line's crossings by direction and each zone's entries, exits and dwells, by class, against the truth (the demo
    has one stream)."""
    truth = events["truth"]
    rows = []
    for counted in events["streams"].values():
        for line, directions in truth["lines"].items():
            for direction, expected in directions.items():
                got = counted["lines"].get(line, {}).get(direction, {})
                rows.append((join("line ", plain(line), f" {direction}"), _versus(got, expected)))
        for zone, kinds in truth["zones"].items():
            for kind, expected in kinds.items():
                rows.append((join("zone ", plain(zone), f" {kind}"), _versus(counted["zones"].get(zone, {}).get(kind, {}), expected)))
    return rows


def _versus(counted: dict[str, int], truth: dict[str, int]) -> Text:
    """`circle×2  exact`, or what the truth says and the difference per class."""
    if counted == truth:
        return join(_items(counted), ("  exact", "green"))
    off = [
        join(plain(c), f" {counted.get(c, 0) - truth.get(c, 0):+d}")
        for c in sorted({*counted, *truth})
        if counted.get(c, 0) != truth.get(c, 0)
    ]
    return join(_items(counted), ("  truth ", "red"), _items(truth), ("  off ", "red"), Text("  ").join(off))


def _items(counts: dict[str, int]) -> Text:
    return Text("  ").join(join(plain(name), f"×{n}") for name, n in counts.items()) if counts else Text("none")


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=EPILOG)(demo)

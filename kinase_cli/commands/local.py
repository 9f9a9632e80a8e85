"""`kinase local up|status|down`: the whole AWS side on this machine, no account needed."""

from __future__ import annotations

from typing import Annotated

import typer

from kinase_cli.options import Json
from kinase_cli.ui import console
from kinase_cli.workflows import local as local_workflow

local_app = typer.Typer(
    help="Run the local stack: a moto server (S3, SQS, ECR, ECS, Logs, CloudFormation, IAM, STS) "
    "and the local Kinesis Video endpoint, in the background.",
    epilog="Examples:\n\n  kinase local up\n\n  kinase deploy --local\n\n  kinase local status --json\n\n  kinase local down",
    no_args_is_help=True,
)

Port = Annotated[int, typer.Option("--port", help="Port of the moto server (S3, SQS, ECS, CloudFormation, ...).")]
KvsPort = Annotated[int, typer.Option("--kvs-port", help="Port of the local Kinesis Video endpoint.")]


@local_app.command(
    "up",
    epilog="Examples:\n\n  kinase local up\n\n  kinase local up --port 5566 --kvs-port 5567",
)
def up(
    port: Port = 4566,
    kvs_port: KvsPort = 4567,
    redeploy: Annotated[
        bool, typer.Option("--redeploy/--no-redeploy", help="Deploy again the environments a restarted (empty) server lost.")
    ] = True,
    json_: Json = False,
) -> None:
    """Start the local stack in the background and bootstrap cdk into it; restart only a server that is down.

    Does nothing if both servers run. The servers keep their state in memory, so after a restart
    the environments that were deployed are deployed again (unless --no-redeploy).
    """
    from kinase_cli.ui import jsonout

    report = local_workflow.start(port, kvs_port, redeploy=redeploy)
    if json_:
        jsonout.emit("local up", report)
    elif not report["already_running"] and not report["redeployed"]:
        console.info("next: kinase deploy --local")


@local_app.command("status", epilog="Examples:\n\n  kinase local status\n\n  kinase local status --json")
def status(json_: Json = False) -> None:
    """Show whether the local servers run, their endpoints, pids and log files."""
    from kinase_cli.local import stack
    from kinase_cli.ui import jsonout

    state = stack.load()
    servers = stack.server_status(state) if state else {}
    running = bool(servers) and all(s["healthy"] for s in servers.values())
    data = {
        "running": running,
        "aws_endpoint": (state or {}).get("aws_endpoint"),
        "kinesis_video_endpoint": (state or {}).get("kinesis_video_endpoint"),
        "bootstrapped": bool((state or {}).get("bootstrapped")),
        "servers": servers,
    }
    if json_:
        jsonout.emit("local status", data)
        return
    if not state:
        console.out.print("local stack: not running (start it with `kinase local up`)")
        return
    from rich.table import Table

    console.out.print(f"local stack: {'running' if running else 'NOT healthy'}")
    table = Table("server", "endpoint", "pid", "state", "log")
    for name, s in servers.items():
        table.add_row(
            name, s["endpoint"], str(s["pid"]), "healthy" if s["healthy"] else ("running" if s["running"] else "stopped"), s["log"]
        )
    console.out.print(table)


@local_app.command("down", epilog="Examples:\n\n  kinase local down\n\n  kinase local down --json")
def down(json_: Json = False) -> None:
    """Stop the local servers that `kinase local up` started (and only those); their state is lost."""
    from kinase_cli.ui import jsonout

    report = local_workflow.stop()
    if json_:
        jsonout.emit("local down", report)
        return
    stopped = report["stopped"]
    console.info(f"stopped {', '.join(stopped)}" if stopped else "the local stack was not running")


def register(app: typer.Typer) -> None:
    app.add_typer(local_app, name="local")

"""The `kinase` command. Command modules register themselves; none imports heavy libraries at import time."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from kinase_cli import __version__
from kinase_cli.ui.errors import KinaseError, translate
from kinase_cli.ui.helptext import install as plain_help_types
from kinase_cli.ui.text import visible

EXAMPLES = """\
Examples:

  kinase demo                                  the whole pipeline, offline
  kinase local up && kinase deploy --local     a local stack to explore
  kinase deploy --profile prod --region eu-west-1
  kinase stream put video.mp4 --realtime --loop
  kinase run-task --follow
  kinase watch --save frames/
"""


class KinaseGroup(TyperGroup):
    """Turns every expected failure into one line on stderr and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # translated below, or re-raised as a bug
            from click.exceptions import ClickException

            if isinstance(exc, ClickException):
                raise
            error = translate(exc)
            if error is None:
                raise
            typer.secho(f"error: {visible(error.line())}", err=True, fg="red")
            raise typer.Exit(error.exit_code) from None


plain_help_types()

app = typer.Typer(
    cls=KinaseGroup,
    name="kinase",
    help="Deploy, run and watch a Kinesis Video -> YOLO -> S3/SQS video-analytics pipeline.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kinase {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", envvar="KINASE_VERBOSE", help="Stream the whole output of cdk instead of a summary.")
    ] = False,
) -> None:
    """Deploy, run and watch a Kinesis Video -> YOLO -> S3/SQS video-analytics pipeline."""
    if verbose:
        import os

        os.environ["KINASE_VERBOSE"] = "1"


def _register() -> None:
    from kinase_cli.commands import COMMAND_MODULES

    for module in COMMAND_MODULES:
        module.register(app)


_register()


def main() -> None:
    """Runs the app outside click's standalone mode, so that a usage error (a bad option, a missing argument)
    is one `error:` line like every other failure instead of typer's boxed panel."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # typer's own click

    from kinase_cli import interrupts

    interrupts.install()
    try:
        code = app(standalone_mode=False, prog_name="kinase")
    except UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError):
            _show_click_error(exc)
        hint = f"see `{exc.ctx.command_path} --help`" if exc.ctx else None
        typer.secho(f"error: {visible(KinaseError(exc.format_message(), hint).line())}", err=True, fg="red")
        raise SystemExit(exc.exit_code) from None
    except ClickException as exc:
        _show_click_error(exc)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # before a command runs (Typer building the command line): as KinaseGroup does
        typer.echo("interrupted", err=True)
        raise SystemExit(interrupts.EXIT_CODE) from None
    except KinaseError as exc:  # raised outside a command (e.g. while parsing)
        typer.secho(f"error: {exc.line()}", err=True, fg="red")
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)


def _show_click_error(exc) -> None:
    """Click's other errors (and `kinase` alone, which shows the help) as typer shows them in standalone mode."""
    from typer import rich_utils

    rich_utils.rich_format_error(exc)
    raise SystemExit(exc.exit_code) from None

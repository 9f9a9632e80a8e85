"""Where output goes: data to stdout, progress and diagnostics to stderr."""

from __future__ import annotations

from rich.console import Console

out = Console()
err = Console(stderr=True)


def info(message: str) -> None:
    err.print(message, highlight=False)


def step(message: str) -> None:
    err.print(f"[bold cyan]==>[/] {message}", highlight=False)


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False)

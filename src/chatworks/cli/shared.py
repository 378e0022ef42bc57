"""What every command group shares: the console, settings from flags, common options."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from chatworks.settings import Settings

console = Console()

UrlOption = Annotated[
    str | None,
    typer.Option(help="Base URL of a running chatworks (or any OpenAI-compatible) server, "
    "e.g. http://127.0.0.1:8000/v1. Without it, the model runs in this process."),
]  # fmt: skip


def settings_from_flags(**overrides) -> Settings:
    """Settings from env/.env, with the flags the user actually passed taking precedence.
    Invalid values end the command with one line each (exit code 2), not a traceback."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        for error in e.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            console.print(f"[red]error:[/] {name}: {error['msg']}", highlight=False)
        raise typer.Exit(2) from None


def run_with_bar(description: str, run):
    """`run(progress)` under a progress bar; `progress(done, total)` moves it."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))

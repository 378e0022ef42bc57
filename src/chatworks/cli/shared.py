"""What every command group shares: the console, settings from flags, common options."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from chatworks.settings import Settings

console = Console()

UrlOption = Annotated[
    str | None,
    typer.Option(help="Base URL of a running chatworks (or any OpenAI-compatible) server, "
    "e.g. http://127.0.0.1:8000/v1. Without it, the model runs in this process."),
]  # fmt: skip


def settings_from_flags(**overrides) -> Settings:
    """Settings from env/.env, with the flags the user actually passed taking precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})

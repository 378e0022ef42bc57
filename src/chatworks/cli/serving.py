"""Serving and talking to a model: `serve`, `models`, `chat`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Annotated

import typer

from chatworks.cli.shared import UrlOption, console, settings_from_flags
from chatworks.settings import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    provider: Annotated[
        str | None,
        typer.Option(
            help="native (default), transformers (reference), openai (upstream) or scripted "
            "(replies from --script, no model)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model id to serve, or a path to load (a run directory such as "
            "runs/NAME, a .gguf file, an HF directory); its name becomes the id."
        ),
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Model to load, served under --model as its id.")
    ] = None,
    upstream_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible upstream for --provider openai.")
    ] = None,
    upstream_key: Annotated[str | None, typer.Option(help="API key for the upstream.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads.")] = None,
    script: Annotated[
        str | None, typer.Option(help="JSON reply rules for --provider scripted.")
    ] = None,
    insecure: Annotated[
        bool | None,
        typer.Option("--insecure", help="Serve without keys on a non-loopback address."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (each loads its own model).")
    ] = None,
) -> None:
    """Serve the OpenAI-compatible API and the web UI."""
    import uvicorn

    from chatworks.api.app import create_app
    from chatworks.telemetry.logging import configure_logging

    flags = dict(
        host=host, port=port, provider=provider, model=model, model_path=model_path,
        upstream_url=upstream_url, upstream_key=upstream_key, threads=threads,
        script_path=script, insecure=insecure, workers=workers,
    )  # fmt: skip
    settings = settings_from_flags(**flags)
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _refuse_if_exposed(settings)
    console.print(
        f"[bold]chatworks[/] serving [cyan]{settings.model}[/] ({settings.provider}) on "
        f"http://{settings.host}:{settings.port}", highlight=False,
    )  # fmt: skip
    # On SIGTERM uvicorn stops listening, lets in-flight requests (streams too) finish for up to
    # the drain deadline, cancels what is left, and exits 0: what Kubernetes and Cloud Run expect.
    common = {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
              "access_log": False,
              "timeout_graceful_shutdown": settings.shutdown_timeout_s}  # fmt: skip
    # After draining, uvicorn re-raises the SIGTERM it caught, and the default action would end
    # the process with status 143. A drained stop is a clean one: exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    _pass_to_workers(settings, flags)
    uvicorn.run("chatworks.cli.serving:worker_app", factory=True, workers=settings.workers,
                **common)  # fmt: skip


def worker_app():
    """The app of one worker process: settings from the environment `_pass_to_workers` set."""
    from chatworks.api.app import create_app
    from chatworks.settings import get_settings
    from chatworks.telemetry.logging import configure_logging

    configure_logging(get_settings().log_level)
    return create_app()


def _pass_to_workers(settings: Settings, flags: dict[str, object]) -> None:
    """Worker processes build their app from the environment: put the flags there, and point
    prometheus_client's multiprocess mode at a fresh directory (telemetry/multiprocess.py)."""
    from chatworks.telemetry import multiprocess

    for name, value in flags.items():
        if value is not None:
            os.environ[f"CHATWORKS_{name.upper()}"] = str(value)
    multiprocess.prepare(settings.data_dir.resolve() / "prometheus-multiproc")


def _refuse_if_exposed(settings: Settings) -> None:
    """Stop before binding a network address that would be open, or closed to everyone."""
    from sqlalchemy.orm import Session

    from chatworks.security.exposure import auth_required, exposure_problem, is_loopback
    from chatworks.security.keys import has_active_keys
    from chatworks.storage import open_database

    if is_loopback(settings.host):
        return
    has_keys = False
    if auth_required(settings) and not settings.admin_key and not settings.oidc_jwks:
        with Session(open_database(settings)) as session:
            has_keys = has_active_keys(session)
    problem = exposure_problem(settings, has_keys)
    if problem:
        console.print(f"[red]refusing to start:[/] {problem}", highlight=False)
        raise typer.Exit(2)
    if not auth_required(settings):
        console.print(f"[yellow]warning:[/] serving {settings.host} without auth (--insecure)")


def models(url: UrlOption = None) -> None:
    """List the models a server (or this process's configuration) serves."""
    if url:
        import openai

        for m in openai.OpenAI(base_url=url, api_key="none").models.list().data:
            console.print(m.id)
        return
    console.print(settings_from_flags().model)


def chat(
    url: UrlOption = None,
    model: Annotated[str | None, typer.Option(help="Model id.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy.")] = 0.7,
) -> None:
    """Chat in the terminal, streaming answers. Ctrl-D or an empty line quits."""
    from chatworks.providers.base import GenerationRequest, Message
    from chatworks.providers.registry import create_provider

    # A remote server is just the `openai` provider pointed at it: one chat loop for both.
    overrides = {"provider": "openai", "upstream_url": url} if url else {}
    settings = settings_from_flags(model=model, **overrides)
    provider = create_provider(settings)
    history = [Message("system", system)] if system else []

    async def run() -> None:
        with console.status("loading model..."):
            await provider.load()
        console.print(f"[dim]chatting with {settings.model}; empty line or Ctrl-D quits[/]")
        while question := _read_line():
            history.append(Message("user", question))
            request = GenerationRequest(
                model=settings.model, messages=tuple(history),
                max_tokens=max_tokens, temperature=temperature,
            )  # fmt: skip
            answer = []
            async for delta in provider.stream(request):
                console.print(delta.text, end="", markup=False, highlight=False)
                answer.append(delta.text)
            console.print()
            history.append(Message("assistant", "".join(answer)))
        await provider.close()

    asyncio.run(run())


def _read_line() -> str:
    try:
        return console.input("[bold green]you>[/] ").strip()
    except EOFError:
        return ""

"""The `chatworks` command line: a thin shell over the packages (parse, call, print)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from chatworks.settings import Settings

app = typer.Typer(
    help="chatworks: train, serve, ground and observe a chat model.", no_args_is_help=True
)
console = Console()

UrlOption = Annotated[
    str | None,
    typer.Option(help="Base URL of a running chatworks (or any OpenAI-compatible) server, "
    "e.g. http://127.0.0.1:8000/v1. Without it, the model runs in this process."),
]  # fmt: skip


def _settings(**overrides) -> Settings:
    """Settings from env/.env, with the flags the user actually passed taking precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    provider: Annotated[
        str | None, typer.Option(help="transformers (local model) or openai (upstream).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model id to serve.")] = None,
    model_path: Annotated[
        str | None, typer.Option(help="GGUF file or HF model directory to load.")
    ] = None,
    upstream_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible upstream for --provider openai.")
    ] = None,
    upstream_key: Annotated[str | None, typer.Option(help="API key for the upstream.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads.")] = None,
) -> None:
    """Serve the OpenAI-compatible API and the web UI."""
    import uvicorn

    from chatworks.api.app import create_app
    from chatworks.telemetry.logging import configure_logging

    settings = _settings(
        host=host, port=port, provider=provider, model=model, model_path=model_path,
        upstream_url=upstream_url, upstream_key=upstream_key, threads=threads,
    )  # fmt: skip
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]chatworks[/] serving [cyan]{settings.model}[/] ({settings.provider}) on "
        f"http://{settings.host}:{settings.port}", highlight=False,
    )  # fmt: skip
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def models(url: UrlOption = None) -> None:
    """List the models a server (or this process's configuration) serves."""
    if url:
        import openai

        for m in openai.OpenAI(base_url=url, api_key="none").models.list().data:
            console.print(m.id)
        return
    console.print(_settings().model)


@app.command()
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
    settings = _settings(model=model, **overrides)
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


if __name__ == "__main__":
    app()

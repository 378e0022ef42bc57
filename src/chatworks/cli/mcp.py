"""MCP servers: `mcp add` / `list` / `remove` register the servers agents may call (straight on
the database the API uses, as `keys` does), and `mcp serve` runs chatworks itself as an MCP
server on stdio (`list_collections`, `search`, `ask`), for a host on this machine."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from chatworks.cli.keys import _csv, _session
from chatworks.cli.shared import console, settings_from_flags

app = typer.Typer(help="Register MCP tool servers, or serve chatworks as one.",
                  no_args_is_help=True)  # fmt: skip


@app.command()
def add(
    label: Annotated[str, typer.Argument(help="The name requests use (`server_label`).")],
    url: Annotated[str | None, typer.Option(help="A streamable-HTTP MCP endpoint.")] = None,
    command: Annotated[
        str | None, typer.Option(help="A command line that serves MCP on stdio.")
    ] = None,
    write: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated tools to treat as writes whatever their "
            "annotations say (writes wait for approval)."
        ),
    ] = None,
) -> None:
    """Register (or replace) an MCP server agents may call: its tools reach the model only
    through this registration, never through a URL in a request."""
    from chatworks.agents.mcp_client import register
    from chatworks.security import audit

    try:
        with _session() as session:
            server = register(session, label, url=url, command=command,
                              write_tools=tuple(_csv(write) or ()))  # fmt: skip
            audit.record(session, actor="cli", action="mcp.register", resource=label,
                         detail={"transport": server.transport})  # fmt: skip
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"registered [bold]{label}[/] ({server.transport}: {server.target})",
                  highlight=False)  # fmt: skip


@app.command("list")
def list_servers() -> None:
    """The registered MCP servers, one per line: label, transport, target, marked writes."""
    from chatworks.agents.mcp_client import registered

    with _session() as session:
        servers = registered(session)
    for s in servers:
        marked = f" writes: {','.join(s.write_tools)}" if s.write_tools else ""
        console.print(f"{s.label}  {s.transport}  {s.target}{marked}", highlight=False,
                      soft_wrap=True)  # fmt: skip
    if not servers:
        console.print("no MCP servers registered (chatworks mcp add LABEL --command ...)")


@app.command()
def remove(label: Annotated[str, typer.Argument(help="The server to unregister.")]) -> None:
    """Unregister a server: agents can no longer call its tools."""
    from chatworks.agents.mcp_client import unregister
    from chatworks.security import audit

    with _session() as session:
        found = unregister(session, label)
        audit.record(session, actor="cli", action="mcp.unregister", resource=label,
                     outcome="ok" if found else "not_found")  # fmt: skip
    if not found:
        console.print(f"[red]error:[/] no MCP server called {label}", highlight=False)
        raise typer.Exit(1)
    console.print(f"removed {label}")


@app.command()
def serve() -> None:
    """Serve chatworks' collections as MCP tools on stdio (`list_collections`, `search`,
    `ask`), acting as the operator. Over HTTP the API serves the same tools at `/mcp`."""
    from chatworks.api.mcp_server import build
    from chatworks.api.service import Service
    from chatworks.providers.registry import create_provider

    settings = settings_from_flags()
    service = Service.create(settings, create_provider(settings))

    async def run() -> None:
        if settings.rag_answer == "generate":  # `ask` then needs the model
            await service.provider.load()
        await build(service).run_stdio_async()

    asyncio.run(run())

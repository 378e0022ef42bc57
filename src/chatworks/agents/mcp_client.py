"""The MCP servers an admin registered, and calling their tools (the `mcp` SDK's client).

Only registered servers are ever contacted: a request names a server by its label, and a
request that names a URL no registration has is refused (no server-side request forgery
through a tool definition). A registration is a command line (stdio: chatworks starts the
process for the run and stops it after) or a streamable-HTTP URL, plus the tools the admin
marks as writes whatever their annotations say.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from chatworks.agents.policy import McpTool, is_write
from chatworks.storage.models import McpServerRow


@dataclass(frozen=True)
class Registered:
    label: str
    transport: Literal["stdio", "http"]
    target: str  # the command line, or the URL
    write_tools: tuple[str, ...] = ()


def _registered(row: McpServerRow) -> Registered:
    return Registered(row.label, row.transport, row.target, tuple(row.write_tools or ()))


def register(
    session: Session, label: str, *, url: str | None = None, command: str | None = None,
    write_tools: tuple[str, ...] = (),
) -> Registered:  # fmt: skip
    """Add or replace the server `label` (exactly one of `url` and `command`)."""
    if (url is None) == (command is None):
        raise ValueError("give exactly one of a URL (--url) and a command (--command)")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL")
    row = session.get(McpServerRow, label) or McpServerRow(label=label)
    row.transport, row.target = ("http", url) if url else ("stdio", command)
    row.write_tools = list(write_tools)
    session.add(row)
    session.flush()
    return _registered(row)


def registered(session: Session) -> list[Registered]:
    return [_registered(r) for r in session.scalars(select(McpServerRow).order_by("label"))]


def find(session: Session, label: str) -> Registered | None:
    row = session.get(McpServerRow, label)
    return _registered(row) if row else None


def unregister(session: Session, label: str) -> bool:
    return session.execute(delete(McpServerRow).where(McpServerRow.label == label)).rowcount > 0


@dataclass(frozen=True)
class Called:
    text: str
    error: bool


class Connection:
    """An open session with one server, for the length of a run."""

    def __init__(self, server: Registered, client: Client):
        self.server, self._client = server, client

    async def tools(self) -> list[McpTool]:
        listed = await self._client.list_tools()
        return [
            McpTool(self.server.label, t.name, t.description or "", dict(t.input_schema),
                    is_write(t.annotations, t.name, list(self.server.write_tools)))
            for t in listed.tools
        ]  # fmt: skip

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> Called:
        """The tool's result as text (its text parts, else its structured content); a timeout
        or a failure in transport raises."""
        result = await asyncio.wait_for(self._client.call_tool(name, arguments), timeout_s)
        texts = [part.text for part in result.content if getattr(part, "type", "") == "text"]
        text = "\n".join(texts) if texts else json.dumps(result.structured_content or {})
        return Called(text, bool(result.is_error))


class Sessions:
    """Open sessions with several servers, owned by one background task.

    The SDK's connections are anyio task groups, which must be entered and left by one task,
    while a streamed response is written by another task than the one that started it; so a
    task of its own opens them, keeps them while the run needs them, and closes them when
    `close` says so. Other tasks may call through them meanwhile."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self, servers: list[Registered], timeout_s: float) -> dict[str, Connection]:
        ready: asyncio.Future[dict[str, Connection]] = asyncio.get_running_loop().create_future()

        async def own() -> None:
            try:
                async with AsyncExitStack() as stack:
                    opened = {s.label: await stack.enter_async_context(connect(s, timeout_s))
                              for s in servers}  # fmt: skip
                    ready.set_result(opened)
                    await self._stop.wait()
            except BaseException as exc:
                if not ready.done():
                    ready.set_exception(exc)

        self._task = asyncio.create_task(own())
        return await asyncio.wait_for(ready, timeout_s)

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with suppress(BaseException):
                await asyncio.wait_for(self._task, 10)


@asynccontextmanager
async def connect(server: Registered, timeout_s: float) -> AsyncIterator[Connection]:
    if server.transport == "stdio":
        command, *args = shlex.split(server.target)
        target: Any = StdioServerParameters(command=command, args=args)
    else:
        target = server.target
    async with Client(target, read_timeout_seconds=timeout_s) as client:
        yield Connection(server, client)

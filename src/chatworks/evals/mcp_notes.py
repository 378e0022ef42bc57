"""A notes-and-files MCP server for the agent scenarios, the tests and trying agents out (the
`mcp` SDK, stdio):

    python -m chatworks.evals.mcp_notes --store DIR   # DIR/notes.json, DIR/files/, DIR/calls.jsonl
    chatworks mcp add notes --command "python -m chatworks.evals.mcp_notes --store DIR"
    python -m chatworks.evals.mcp_notes --store DIR --port 9100   # streamable HTTP on loopback

Read tools: `list_notes`, `read_note`, `list_files`, `read_file`. Write tools: `write_note`
(not read-only), `delete_note` and `send_email` (destructive). Every call that changes
something is appended to `calls.jsonl`, so a test can count how often a write really ran (an
approved write must run exactly once). Notes and files are whatever the test put in the store,
injected instructions included.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

READ = ToolAnnotations(read_only_hint=True)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True)


def build(store: Path) -> MCPServer:
    server = MCPServer("notes")
    notes_file, files, calls = store / "notes.json", store / "files", store / "calls.jsonl"

    def notes() -> dict[str, str]:
        return json.loads(notes_file.read_text()) if notes_file.exists() else {}

    def changed(tool: str, **arguments: str) -> None:
        with calls.open("a") as log:
            log.write(json.dumps({"tool": tool, **arguments}) + "\n")

    @server.tool(annotations=READ)
    def list_notes() -> list[str]:
        """The names of all notes."""
        return sorted(notes())

    @server.tool(annotations=READ)
    def read_note(name: str) -> str:
        """The text of the note called `name`."""
        return notes().get(name, f"no note called {name}")

    @server.tool(annotations=WRITE)
    def write_note(name: str, text: str) -> str:
        """Create or replace the note `name` with `text`."""
        saved = {**notes(), name: text}
        notes_file.write_text(json.dumps(saved))
        changed("write_note", name=name, text=text)
        return f"saved note {name}"

    @server.tool(annotations=DESTRUCTIVE)
    def delete_note(name: str) -> str:
        """Delete the note `name`."""
        saved = notes()
        saved.pop(name, None)
        notes_file.write_text(json.dumps(saved))
        changed("delete_note", name=name)
        return f"deleted note {name}"

    @server.tool(annotations=READ)
    def list_files() -> list[str]:
        """The names of all files."""
        return sorted(p.name for p in files.iterdir()) if files.exists() else []

    @server.tool(annotations=READ)
    def read_file(name: str) -> str:
        """The contents of the file `name`."""
        path = files / Path(name).name
        return path.read_text() if path.exists() else f"no file called {name}"

    @server.tool(annotations=DESTRUCTIVE)
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an e-mail."""
        changed("send_email", to=to, subject=subject, body=body)
        return f"sent to {to}"

    return server


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--port", type=int, help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    server = build(args.store)
    if args.port is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port, stateless_http=True,
                   json_response=True)  # fmt: skip

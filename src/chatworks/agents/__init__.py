"""Agents that act through tools, and never take a write action without a person's permission.

- `items`: the Responses API's items (messages, function calls, MCP calls, approval requests,
  file search calls) as JSON, and input items turned into the model's conversation.
- `policy`: which tools a key may call, which are writes, when a call needs approval (taint).
- `mcp_client`: calling the tools of MCP servers an admin registered (stdio or streamable HTTP).
- `store`: stored responses and approvals; an approved call runs exactly once.
- `loop`: one run: generate, validate each call against its schema, ask, run, guard, repeat.
- `mcp_server`: chatworks itself as an MCP server (`list_collections`, `search`, `ask`).

Does not cover: HTTP (`api/routes/responses.py`), running code or shells of its own (there are
no such tools), or tools that are not registered MCP servers, the client's own functions, or
file search over chatworks' collections.
"""

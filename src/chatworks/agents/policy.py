"""Who may call which tool, and when a person must say yes first.

The rules, in the order they are checked for an MCP tool call:
1. The key's tool list (`chatworks keys create --tools 'notes:*'`) must allow `server:tool`,
   or the call is `blocked` (and the tool was never offered to the model in the first place).
2. A request's `require_approval` may tighten this server's policy, never loosen it: "always"
   (or the tool named under "always") makes any call wait for approval.
3. Read-only tools run. A tool is a *write* when its MCP annotations do not say it is
   read-only, or say it is destructive, or the admin marked it (`chatworks mcp add --write`):
   an unannotated tool is a write, so a server that says nothing fails closed.
4. Once a tool result or passage flagged as instruction-like is in the conversation (taint),
   every write waits for approval, whatever the key's policy says: an injected instruction
   cannot borrow the key's standing permissions.
5. Otherwise a write runs unapproved only when the admin's policy for the key lets it
   (`--auto-approve`), or a person approved that tool "always in this conversation".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatworks.security.principal import Principal, matches


@dataclass(frozen=True)
class McpTool:
    """A tool of a registered MCP server, as offered to the model."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    write: bool

    @property
    def function_name(self) -> str:
        """The model's name for it: unique across servers, letters, digits and `_` only."""
        return f"{self.server}__{self.name}".replace("-", "_").replace(".", "_")

    def listed(self) -> dict[str, Any]:
        """As an `mcp_list_tools` item lists it."""
        return {"name": self.name, "description": self.description,
                "input_schema": self.input_schema,
                "annotations": {"read_only_hint": not self.write}}  # fmt: skip


def is_write(annotations: Any, name: str, marked_writes: list[str]) -> bool:
    """A write unless the server says read-only and not destructive, and the admin agrees."""
    if name in marked_writes:
        return True
    read_only = bool(getattr(annotations, "read_only_hint", False))
    destructive = bool(getattr(annotations, "destructive_hint", False))
    return not read_only or destructive


@dataclass(frozen=True)
class ApprovalRule:
    """A request's `require_approval`: "always", "never", or lists of tool names for each."""

    always: bool = False
    always_tools: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: str | dict[str, Any] | None) -> ApprovalRule:
        if raw in (None, "never"):
            return cls()  # "never" cannot loosen anything: writes still ask (rule 2)
        if raw == "always":
            return cls(always=True)
        if isinstance(raw, dict):
            names = (raw.get("always") or {}).get("tool_names") or []
            return cls(always_tools=frozenset(names))
        raise ValueError("require_approval must be 'always', 'never' or an object")


def needs_approval(
    principal: Principal, tool: McpTool, rule: ApprovalRule, *, tainted: bool,
    remembered: frozenset[str],
) -> bool:  # fmt: skip
    """Whether a call of `tool` must wait for a person (rules 2-5 above)."""
    if rule.always or tool.name in rule.always_tools:
        return True
    if not tool.write:
        return False
    if tainted:
        return True
    standing = principal.auto_approves(tool.server, tool.name)
    return not (standing or matches(remembered, tool.server, tool.name))

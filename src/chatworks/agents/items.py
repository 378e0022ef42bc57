"""The Responses API's items as the wire carries them, and the conversation the model reads.

Output items are plain JSON dicts shaped as OpenAI's (`message`, `function_call`,
`mcp_list_tools`, `mcp_approval_request`, `mcp_call`, `file_search_call`), so the `openai`
client and the Agents SDK parse them unchanged. Input items (a string, messages, earlier
outputs sent back, `function_call_output`) become `Turn`s: the model's conversation, stored as
JSON with a response so `previous_response_id` can continue it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from chatworks.providers.base import Message, ToolCall

Role = Literal["system", "user", "assistant", "tool"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Turn:
    """One message of the model's conversation (JSON-friendly, unlike `Message`)."""

    role: Role
    content: str
    calls: tuple[tuple[str, str, str], ...] = ()  # (call id, function name, arguments JSON)
    call_id: str | None = None  # a tool turn: the call it answers

    def message(self) -> Message:
        calls = tuple(ToolCall(i, name, args) for i, name, args in self.calls)
        return Message(self.role, self.content, calls, self.call_id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Turn:
        return cls(raw["role"], raw["content"], tuple(map(tuple, raw.get("calls", ()))),
                   raw.get("call_id"))  # fmt: skip


# --- output items ----------------------------------------------------------------------------


def message(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": annotations or []}
    return {"id": new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
            "content": [part]}  # fmt: skip


def function_call(call: ToolCall) -> dict[str, Any]:
    return {"id": new_id("fc"), "type": "function_call", "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": "completed"}  # fmt: skip


def mcp_list_tools(server: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": new_id("mcpl"), "type": "mcp_list_tools", "server_label": server,
            "tools": tools}  # fmt: skip


def mcp_approval_request(approval_id: str, server: str, tool: str, arguments: str) -> dict:
    return {"id": approval_id, "type": "mcp_approval_request", "server_label": server,
            "name": tool, "arguments": arguments}  # fmt: skip


def mcp_call(
    server: str, tool: str, arguments: str, *, output: str | None = None,
    error: str | None = None, approval_request_id: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {"id": new_id("mcp"), "type": "mcp_call", "server_label": server, "name": tool,
            "arguments": arguments, "output": output, "error": error,
            "approval_request_id": approval_request_id,
            "status": "failed" if error else "completed"}  # fmt: skip


def file_search_call(queries: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": new_id("fs"), "type": "file_search_call", "status": "completed",
            "queries": queries, "results": results}  # fmt: skip


def output_text(items: list[dict[str, Any]]) -> str:
    """The text of the message items (the SDK's `response.output_text`)."""
    return "".join(part["text"] for item in items if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")  # fmt: skip


# --- input items -----------------------------------------------------------------------------


@dataclass
class Input:
    """A request's input, split: the turns to append, and the approvals it answers."""

    turns: list[Turn] = field(default_factory=list)
    approvals: list[dict[str, Any]] = field(default_factory=list)  # mcp_approval_response


def _text(content: Any) -> str:
    """A message's content: a string, or parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ValueError("a message's content must be a string or a list of parts")
    texts = []
    for part in content:
        if part.get("type") not in ("input_text", "output_text", "text"):
            raise ValueError(f"content part of type {part.get('type')!r} is not supported")
        texts.append(part.get("text", ""))
    return "".join(texts)


def parse_input(raw: str | list[dict[str, Any]]) -> Input:
    """Turns and approval answers from a request's `input`. ValueError names what is wrong."""
    parsed = Input()
    if isinstance(raw, str):
        parsed.turns.append(Turn("user", raw))
        return parsed
    for i, item in enumerate(raw):
        kind = item.get("type", "message")
        if kind == "message":
            role = {"developer": "system"}.get(item.get("role"), item.get("role"))
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"input.{i}: role must be user, assistant, system or developer")
            parsed.turns.append(Turn(role, _text(item.get("content", ""))))
        elif kind == "function_call":
            call = (item["call_id"], item["name"], item.get("arguments") or "{}")
            parsed.turns.append(Turn("assistant", "", (call,)))
        elif kind == "function_call_output":
            output = item.get("output", "")
            text = output if isinstance(output, str) else json.dumps(output)
            parsed.turns.append(Turn("tool", text, call_id=item["call_id"]))
        elif kind == "mcp_approval_response":
            parsed.approvals.append(item)
        elif kind in ("reasoning", "mcp_list_tools", "mcp_approval_request", "mcp_call",
                      "file_search_call"):  # fmt: skip
            continue  # earlier outputs sent back: the stored conversation already has them
        else:
            raise ValueError(f"input.{i}: items of type {kind!r} are not supported")
    return parsed

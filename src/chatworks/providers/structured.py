"""Structured output and tool calls for models whose chat template has no tool syntax.

The prompt format (chosen here, since SmolLM2's template - like most small models' - has none):
- the tools are described in the system message, as JSON, with the instruction to answer a call
  as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes/Qwen-style tags);
- earlier assistant calls are rendered back in that form, and `tool` turns keep their role;
- a `json_schema` response format puts the schema in the system message too: a 135M model
  fills the fields much better when it has read their names.

The grammar (for `engine/constraints.py`) makes the format hold whatever the model would say:
`required` or a named function allows only calls, each one's arguments valid against its tool's
schema; `auto` allows calls or text that does not start with `<`, so the first character tells
the reader which one it is; `response_format` constrains the text branch to its JSON.

Does not cover: templates with their own tool syntax (Llama 3.1, Qwen 2.5) - they get this format
too rather than their own; streaming arguments piece by piece (each call is sent whole).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from chatworks.engine.constraints import json_schema_grammar, lark_grammar, lark_json
from chatworks.providers.base import GenerationRequest, Message, ProviderError, Tool, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_PARALLEL_CALLS = 4  # bounds a model that keeps calling: the grammar then requires EOS
_CALL = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)


@dataclass(frozen=True)
class Plan:
    """What the native provider runs for one request."""

    messages: tuple[Message, ...] | None
    grammar: str | None  # llguidance grammar; None: unconstrained
    may_call: bool  # the output may be tool calls


def plan(request: GenerationRequest) -> Plan:
    fmt = request.response_format
    text_schema = None
    if fmt is not None and fmt.type != "text":
        text_schema = fmt.schema if fmt.type == "json_schema" else {"type": "object"}
    tools = _chosen_tools(request)
    messages = request.messages
    if messages is not None:
        messages = _render_history(messages)
        note = _instructions(tools, request.tool_choice, text_schema)
        if note:
            messages = _with_system_note(messages, note)
    if not tools:
        grammar = json_schema_grammar(text_schema) if text_schema is not None else None
        return Plan(messages, grammar, may_call=False)
    return Plan(messages, _tools_grammar(request, tools, text_schema), may_call=True)


def _chosen_tools(request: GenerationRequest) -> tuple[Tool, ...]:
    choice = request.tool_choice
    if not request.tools or choice == "none":
        return ()
    if choice in ("auto", "required"):
        return request.tools
    named = tuple(t for t in request.tools if t.name == choice)
    if not named:
        raise ProviderError(f"tool_choice names {choice!r}, which is not in tools", 400,
                            "invalid_tool_choice")  # fmt: skip
    return named


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _tools_grammar(
    request: GenerationRequest, tools: tuple[Tool, ...], text_schema: dict[str, Any] | None
) -> str:
    calls = {"anyOf": [_call_schema(t) for t in tools]}
    most = MAX_PARALLEL_CALLS if request.parallel_tool_calls else 1
    rules = [
        f"calls: call{{1,{most}}}",
        f'call: "{OPEN}" {lark_json(calls)} "{CLOSE}"',
    ]
    if request.tool_choice == "auto":
        # Text may not start with "<": the first character then says text or call.
        text = lark_json(text_schema) if text_schema is not None else r"/[^<](.|\n)*/"
        rules = ["start: text | calls", f"text: {text}", *rules]
    else:
        rules = ["start: calls", *rules]
    return lark_grammar("\n".join(rules) + "\n")


def _instructions(tools: tuple[Tool, ...], choice: str, text_schema: dict[str, Any] | None) -> str:
    parts = []
    if tools:
        listed = "\n".join(
            json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters})
            for t in tools
        )
        how = "You must call a function" if choice != "auto" else "You may call a function"
        parts.append(
            f'{how}. To call one, reply with {OPEN}{{"name": <function name>, "arguments": '
            f"<arguments object>}}{CLOSE}. Available functions:\n{listed}"
        )
    if text_schema is not None:
        parts.append(f"Reply with a JSON object that follows this JSON Schema:\n"
                     f"{json.dumps(text_schema)}")  # fmt: skip
    return "\n\n".join(parts)


def _with_system_note(messages: tuple[Message, ...], note: str) -> tuple[Message, ...]:
    if messages and messages[0].role == "system":
        first = messages[0]
        return (replace(first, content=f"{first.content}\n\n{note}"), *messages[1:])
    return (Message("system", note), *messages)


def _render_history(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """Earlier calls become text in the prompt format, so the template needs no tool fields."""
    return tuple(_as_text(m) if m.tool_calls else m for m in messages)


def _as_text(message: Message) -> Message:
    calls = "".join(format_call(c) for c in message.tool_calls)
    return replace(message, content=message.content + calls, tool_calls=())


def format_call(call: ToolCall) -> str:
    args = json.loads(call.arguments or "{}")
    return OPEN + json.dumps({"name": call.name, "arguments": args}) + CLOSE


def parse_calls(text: str) -> tuple[ToolCall, ...]:
    """The calls in a grammar-constrained output (a cut-short last call is dropped)."""
    calls = []
    for body in _CALL.findall(text):
        call = json.loads(body)
        calls.append(
            ToolCall(f"call_{uuid.uuid4().hex[:24]}", call["name"], json.dumps(call["arguments"]))
        )
    return tuple(calls)


class CallSplitter:
    """Streams the text of a reply and holds back tool calls, which are returned at the end.

    The grammar guarantees the first character decides: `<` starts calls, anything else is text.
    """

    def __init__(self, may_call: bool):
        self._mode = "undecided" if may_call else "text"
        self._held: list[str] = []

    def push(self, text: str) -> str:
        if self._mode == "undecided" and text:
            self._mode = "calls" if text.startswith("<") else "text"
        if self._mode == "calls":
            self._held.append(text)
            return ""
        return text

    def calls(self) -> tuple[ToolCall, ...]:
        return parse_calls("".join(self._held)) if self._mode == "calls" else ()

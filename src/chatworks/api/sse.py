"""Server-Sent Events in the OpenAI streaming format.

A stream is `data: {chunk}` events, then (with `stream_options.include_usage`) one chunk with
empty `choices` and the usage, then `data: [DONE]`. An error after the stream has started is
sent as one `data: {"error": ...}` event, which OpenAI clients raise as an exception.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from chatworks.api.errors import error_body
from chatworks.api.schemas import UsageOut
from chatworks.providers.base import Delta, ProviderError, ToolCall

DONE = b"data: [DONE]\n\n"


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


@dataclass(frozen=True)
class ChunkShape:
    """How one piece of text looks in a chat chunk (`delta`) or a text-completion chunk (`text`)."""

    object: str
    chat: bool

    def choice(
        self, text: str, finish_reason: str | None, first: bool, calls: tuple[ToolCall, ...] = ()
    ) -> dict:
        if self.chat:
            delta: dict = {"role": "assistant", "content": text} if first else {"content": text}
            if calls:  # each call whole, in one delta: OpenAI's shape, which clients accumulate
                delta["tool_calls"] = [{"index": i, **c.openai()} for i, c in enumerate(calls)]
                delta["content"] = text or None
            body = {"delta": delta}
        else:
            body = {"text": text}
        return {"index": 0, **body, "logprobs": None, "finish_reason": finish_reason}


CHAT_CHUNK = ChunkShape("chat.completion.chunk", chat=True)
TEXT_CHUNK = ChunkShape("text_completion", chat=False)


def usage_dict(delta: Delta) -> dict:
    u = delta.usage
    assert u is not None
    return UsageOut.of(u).model_dump(exclude_none=True)


async def encode_stream(
    deltas: AsyncIterator[Delta],
    *,
    shape: ChunkShape,
    completion_id: str,
    model: str,
    created: int,
    include_usage: bool,
    finish_fields: Callable[[str], dict] | None = None,
) -> AsyncIterator[bytes]:
    """Turns provider deltas into SSE bytes. Empty non-final deltas are skipped.
    `finish_fields(full_text)` adds fields to the finishing chunk (e.g. citations)."""
    base = {"id": completion_id, "object": shape.object, "created": created, "model": model}
    extra = {"usage": None} if include_usage else {}
    first = True
    parts: list[str] = []  # kept only when the finishing chunk needs the whole text
    try:
        async for delta in deltas:
            if not delta.text and delta.finish_reason is None:
                continue
            if finish_fields is not None:
                parts.append(delta.text)
            choice = shape.choice(delta.text, delta.finish_reason, first, delta.tool_calls)
            finishing = delta.finish_reason is not None and finish_fields is not None
            late = finish_fields("".join(parts)) if finishing else {}
            yield event({**base, "choices": [choice], **extra, **late})
            first = False
            if delta.finish_reason is not None and include_usage and delta.usage is not None:
                yield event({**base, "choices": [], "usage": usage_dict(delta)})
    except ProviderError as exc:  # headers are already sent: report in-band, then end
        yield event(error_body(exc.status_code, str(exc), exc.code))
        return
    yield DONE

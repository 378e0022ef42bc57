"""The OpenAI streaming format: chunk shapes, usage placement, in-band errors."""

from __future__ import annotations

import asyncio
import json

from chatworks.api.sse import CHAT_CHUNK, DONE, TEXT_CHUNK, encode_stream
from chatworks.providers.base import Delta, ProviderError, Usage


async def _deltas(*items):
    for item in items:
        if isinstance(item, Exception):
            raise item
        yield item


def encode(*items, shape=CHAT_CHUNK, include_usage=False) -> list:
    async def run():
        return [
            chunk
            async for chunk in encode_stream(
                _deltas(*items), shape=shape, completion_id="id-1", model="m", created=1,
                include_usage=include_usage,
            )
        ]  # fmt: skip

    raw = asyncio.run(run())
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in raw)
    return [c if c == DONE else json.loads(c[6:]) for c in raw]


FINAL = Delta(finish_reason="stop", usage=Usage(7, 2))


def test_chat_chunks_carry_role_first_then_content_then_finish():
    events = encode(Delta("Hi", tokens=1), Delta(" there", tokens=1), FINAL)
    assert events[-1] == DONE
    first, second, last = events[:3]
    assert first["object"] == "chat.completion.chunk" and first["id"] == "id-1"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert second["choices"][0]["delta"] == {"content": " there"}
    assert last["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in first


def test_usage_chunk_comes_last_with_empty_choices_when_asked():
    events = encode(Delta("Hi", tokens=1), FINAL, include_usage=True)
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    assert all(e["usage"] is None for e in events[:-2])


def test_text_completion_chunks_use_text():
    events = encode(Delta("abc", tokens=1), FINAL, shape=TEXT_CHUNK)
    assert events[0]["object"] == "text_completion"
    assert events[0]["choices"][0]["text"] == "abc"


def test_empty_pieces_are_skipped():
    events = encode(Delta("", tokens=1), Delta("x", tokens=1), FINAL)
    assert len(events) == 3


def test_error_after_start_is_reported_in_band_without_done():
    events = encode(Delta("Hi", tokens=1), ProviderError("boom", 502, "upstream_error"))
    assert events[-1] == {
        "error": {
            "message": "boom",
            "type": "server_error",
            "code": "upstream_error",
            "param": None,
        }
    }
    assert DONE not in events

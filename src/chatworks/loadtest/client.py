"""Sending one request and timing it: the status, time to first token, the gaps between
streamed chunks, end-to-end latency and token counts.

Raw HTTP (httpx), not an SDK: a load test must see every status as the server sent it (an SDK
retries 429s and 5xx by itself and would hide them) and time the first byte of content itself.
Streams are read as server-sent events; the token counts come from the usage the server reports
(`stream_options.include_usage`), else from the number of content chunks. Not covered: which
request (`workload.py`), when (`schedule.py`), the summary (`report.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from chatworks.loadtest.workload import Call


@dataclass
class Result:
    """One request's outcome; times in seconds, `start` from the beginning of its run.
    `status` 0 is a transport failure (refused, reset, timed out); a stream that fails after
    its 200 keeps the status and carries the error's code."""

    scenario: str
    start: float
    status: int
    latency: float
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)  # between streamed content chunks
    output_tokens: int = 0
    input_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.error is None

    @property
    def outcome(self) -> str:
        """How errors are counted: the status, `transport`, or `200 then <code>`."""
        if self.status == 0:
            return "transport"
        return (
            f"{self.status} then {self.error}"
            if self.status < 300 and self.error
            else str(self.status)
        )

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (vLLM's TPOT); None below two tokens."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


async def send(client: httpx.AsyncClient, call: Call, started_at: float, limit: float) -> Result:
    """Sends `call` and times it against the run's clock (`started_at`, perf_counter); after
    `limit` seconds in all (a slow stream included) it is abandoned as `timeout`."""
    begin = time.perf_counter()
    result = Result(call.scenario, begin - started_at, status=0, latency=0.0)
    try:
        async with asyncio.timeout(limit):
            await _exchange(client, call, result, begin)
    except TimeoutError:
        result.status, result.error = 0, "timeout"
    except httpx.HTTPError as exc:
        result.status, result.error = 0, type(exc).__name__
    result.latency = time.perf_counter() - begin
    if result.ok and result.ttft is None:
        result.ttft = result.latency  # a whole response: its first token arrives with the rest
    return result


async def _exchange(client: httpx.AsyncClient, call: Call, result: Result, begin: float) -> None:
    if call.streamed:
        await _stream(client, call, result, begin)
        return
    response = await client.post(call.path, json=call.json, files=call.files)
    result.status = response.status_code
    if response.status_code < 300:
        _count(result, response.json().get("usage"))
    else:
        result.error = _error_code(response)


async def _stream(client: httpx.AsyncClient, call: Call, result: Result, begin: float) -> None:
    async with client.stream("POST", call.path, json=call.json) as response:
        result.status = response.status_code
        if response.status_code >= 300:
            await response.aread()
            result.error = _error_code(response)
            return
        last, chunks = None, 0
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if "error" in event:  # an error after the 200: the stream failed midway
                result.error = event["error"].get("code") or "stream_error"
                return
            if _content(event):
                now = time.perf_counter()
                if last is None:
                    result.ttft = now - begin
                else:
                    result.gaps.append(now - last)
                last, chunks = now, chunks + 1
            if event.get("usage"):
                _count(result, event["usage"])
        if not result.output_tokens:
            result.output_tokens = chunks


def _content(event: dict) -> bool:
    choices = event.get("choices") or []
    return any((c.get("delta") or {}).get("content") for c in choices)


def _count(result: Result, usage: dict | None) -> None:
    if usage:
        result.output_tokens = usage.get("completion_tokens") or 0
        result.input_tokens = usage.get("prompt_tokens") or 0


def _error_code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return error.get("code") or error.get("type") or response.reason_phrase
    except (ValueError, AttributeError):
        return response.reason_phrase

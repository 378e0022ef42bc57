r"""The scripted provider: deterministic replies without a model.

Covers: choosing a reply from a JSON script (the first rule whose regex matches the last user
or tool message, else an echo of that message; `\1` in a reply is what the rule's first group
matched), resolving `{cite:TEXT}` in a reply to the `[n]` marker of the numbered source that
contains TEXT, tool calls (when the request offers tools, a reply of `<tool_call>{"name": ...,
"arguments": ...}</tool_call>` tags is returned as calls: how tests play a model that calls
tools, or one that obeys an instruction planted in a tool's result), and streaming the reply
piece by piece with the same stop-string and `max_tokens` handling as a model. Does not cover:
language. It exists so that everything around generation (citations, refusals, streams,
cancellation, tools, the UI) can be tested through the real server with answers that do not
depend on a CPU's rounding, and so the UI can be worked on without loading a model.

A script (`CHATWORKS_SCRIPT_PATH`):

    {"delay_s": 0.0,
     "rules": [{"match": "Question: .*code word", "reply": "It is BLUEBIRD-42 {cite:BLUEBIRD}."},
               {"match": "slowly", "reply": "one two three", "delay_s": 2.0}]}

(A rule's own `delay_s` replaces the script's for its replies: one server can play an upstream
that is slow for some prompts and quick for others.)

(A grounded prompt puts the passages before "Question: ...", so a rule for a grounded question
anchors on that, or it would also match any question whose passages mention the words.)

A "token" is one whitespace-delimited word with the whitespace after it, so usage counts are
exact and predictable.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

from chatworks.engine.textstream import StopMatcher
from chatworks.providers.base import (
    Delta,
    GenerationRequest,
    ProviderError,
    Timing,
    Usage,
    reject_structured,
)
from chatworks.providers.structured import OPEN, parse_calls
from chatworks.settings import Settings

_PIECE = re.compile(r"\s*\S+\s*|\s+")
_CITE = re.compile(r"\{cite:([^}]+)\}")
# The numbered passages of a grounded prompt, as `chatworks.rag.answer` writes them.
_SOURCE = re.compile(r"<source id=(\d+)[^\n]*\n(.*?)\n</source>", re.S)  # header: one line


@dataclass(frozen=True)
class Rule:
    match: re.Pattern[str]
    reply: str
    delay_s: float | None = None  # None: the script's


@dataclass(frozen=True)
class Script:
    rules: tuple[Rule, ...] = ()
    delay_s: float = 0.0  # pause before each piece, to make streams slow enough to stop

    @classmethod
    def load(cls, path: Path) -> Script:
        try:
            raw = json.loads(path.read_text())
            rules = tuple(
                Rule(re.compile(r["match"]), r["reply"],
                     None if r.get("delay_s") is None else float(r["delay_s"]))
                for r in raw.get("rules", [])
            )  # fmt: skip
            return cls(rules, float(raw.get("delay_s", 0.0)))
        except (OSError, ValueError, KeyError, TypeError, re.error) as exc:
            raise ValueError(f"script {path}: {exc}") from exc


def pieces(text: str) -> list[str]:
    return _PIECE.findall(text)


def _cite(reply: str, prompt: str) -> str:
    """`{cite:TEXT}` becomes `[n]` for the first source containing TEXT, or nothing."""
    sources = [(number, body) for number, body in _SOURCE.findall(prompt)]

    def marker(match: re.Match[str]) -> str:
        wanted = match.group(1)
        return next((f"[{n}]" for n, body in sources if wanted in body), "")

    return _CITE.sub(marker, reply)


class ScriptedProvider:
    name = "scripted"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.max_concurrency = settings.engine_slots
        self._script: Script | None = None

    async def load(self) -> None:
        path = self.settings.script_path
        self._script = Script.load(path) if path else Script()

    @property
    def ready(self) -> bool:
        return self._script is not None

    async def models(self) -> list[str]:
        return [self.settings.model]

    async def close(self) -> None:
        self._script = None

    def reply(self, request: GenerationRequest) -> tuple[str, float]:
        """The reply and the pause before each of its pieces."""
        if self._script is None:
            raise ProviderError("the script is still loading", 503, "model_loading")
        if request.messages is None:
            return request.prompt or "", self._script.delay_s
        said = [m.content for m in request.messages if m.role in ("user", "tool")]
        last = said[-1] if said else ""
        for rule in self._script.rules:
            if found := rule.match.search(last):
                delay = self._script.delay_s if rule.delay_s is None else rule.delay_s
                return _cite(found.expand(rule.reply), last), delay
        return last, self._script.delay_s

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        reject_structured(replace(request, tools=()), "scripted")  # tools: see the docstring
        text, delay_s = self.reply(request)
        calling = text.lstrip().startswith(OPEN)
        if request.tools and request.tool_choice not in ("auto", "none") and not calling:
            # It cannot make a reply a call: refuse what it cannot honour, as for formats.
            message = f"tools with tool_choice={request.tool_choice!r}: the reply is no call"
            raise ProviderError(message, 400, "unsupported_parameter")
        if request.tools and request.tool_choice != "none" and calling:
            calls = parse_calls(text)
            usage = Usage(len(pieces(" ".join(m.content for m in request.messages or ()))),
                          len(pieces(text)))  # fmt: skip
            yield Delta("", usage.completion_tokens, "tool_calls", usage, tool_calls=calls)
            return
        reply = pieces(text)
        texts = (
            [request.prompt or ""]
            if request.messages is None
            else [m.content for m in request.messages]
        )
        usage = Usage(prompt_tokens=sum(len(pieces(text)) for text in texts))
        stops = StopMatcher(request.stop)
        # Phase times shaped like the engine's (no queue; "prefill" is the wait for the first
        # piece), so traces of the scripted server have the same spans as a model's.
        started = first = time.time_ns()
        for i, piece in enumerate(reply[: request.max_tokens]):
            if delay_s:
                await asyncio.sleep(delay_s)
            if i == 0:
                first = time.time_ns()
            usage.completion_tokens += 1
            text = stops.push(piece)
            if stops.stopped:
                yield Delta(text, 1, "stop", usage, Timing(started, started, first, time.time_ns()))
                return
            yield Delta(text, 1)
        finish = "length" if len(reply) > request.max_tokens else "stop"
        timing = Timing(started, started, first, time.time_ns())
        yield Delta(stops.flush(), 0, finish, usage, timing)

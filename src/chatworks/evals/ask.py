"""Asking one question for a suite run, in this process: what came back and what it cost.

`Asked` is the record a suite run keeps per question, whichever way it was asked; `LocalAsker`
asks the way `chatworks ask` answers (`Library.prepare`, then the provider through
`answer_greedily`), and `client.RemoteAsker` asks a running server over HTTP. Not covered:
scoring the answer (`questions.py`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from chatworks.evals.runner import invalid_citations
from chatworks.providers.base import Provider, ProviderError
from chatworks.rag.answer import answer_greedily
from chatworks.rag.library import Library


@dataclass(frozen=True)
class Cited:
    source: str
    quote: str


@dataclass(frozen=True)
class Asked:
    answer: str
    citations: list[Cited] = field(default_factory=list)
    refused: bool = False
    latency_s: float = 0.0  # retrieval and generation, as the asker saw it
    prompt_tokens: int = 0  # 0 when nothing was generated (a refusal or an extractive answer)
    completion_tokens: int = 0
    invalid_citations: int | None = None  # in process only: citations naming no given passage
    error: str | None = None  # the request failed; the answer is empty
    passages: list[Cited] = field(default_factory=list)  # given to the model (in process only)


class Asker(Protocol):
    """Asks questions for a suite run. `start` before the first, `close` after the last."""

    async def start(self) -> None: ...

    async def ask(self, question: str) -> Asked: ...

    async def close(self) -> None: ...


class LocalAsker:
    def __init__(
        self, library: Library, provider: Provider, collection: str, model: str, max_tokens: int
    ):
        self.library, self.provider, self.collection = library, provider, collection
        self.model, self.max_tokens = model, max_tokens

    async def start(self) -> None:
        await self.provider.load()

    async def close(self) -> None:
        await self.provider.close()

    async def ask(self, question: str) -> Asked:
        started = time.perf_counter()
        # Retrieval embeds the question: CPU work that must not hold the loop other asks share.
        prepared = await asyncio.to_thread(self.library.prepare, question, self.collection)
        try:
            grounded = await answer_greedily(self.provider, self.model, question, prepared,
                                             self.max_tokens)  # fmt: skip
        except ProviderError as e:  # an upstream down or overloaded: one question fails
            return Asked("", latency_s=time.perf_counter() - started, error=f"{e.code}: {e}")
        return Asked(
            grounded.answer, [Cited(c.source, c.quote) for c in grounded.citations],
            grounded.refused, time.perf_counter() - started, grounded.usage.prompt_tokens,
            grounded.usage.completion_tokens, invalid_citations(grounded, prepared),
            passages=[Cited(s.passage.hit.source, s.passage.hit.chunk.text)
                      for s in prepared.sources],
        )  # fmt: skip

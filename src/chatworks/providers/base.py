"""The Provider contract: what the API needs from anything that generates text.

A provider turns a `GenerationRequest` into an async stream of `Delta`s. The last delta carries
`finish_reason` and `usage`. Cancelling is closing the stream (`aclose()`, or the task that
iterates it being cancelled): a provider must then stop generating within one step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One generation. Exactly one of `messages` (chat) or `prompt` (raw completion) is set."""

    model: str
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timing:
    """When a generation's phases happened (epoch ns, comparable with span times): submitted,
    admitted to a slot, first token out of prefill, finished. Providers that can tell report
    it on the final Delta; the API turns it into queue / prefill / decode spans and metrics."""

    submitted_ns: int
    admitted_ns: int
    first_token_ns: int
    finished_ns: int


@dataclass
class Delta:
    """A piece of generated text; the final one has `finish_reason` and `usage` set.

    `tokens` counts the generated tokens this piece accounts for (text can be held back across
    tokens), so token counters stay live even for a generation that is cancelled.
    """

    text: str = ""
    tokens: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timing: Timing | None = None


class ProviderError(Exception):
    """A provider failure the API reports to the client (e.g. upstream unreachable)."""

    def __init__(
        self,
        message: str,
        status_code: int = 502,
        code: str = "upstream_error",
        retry_after_s: int | None = None,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.retry_after_s = retry_after_s  # sent as `Retry-After`


@runtime_checkable
class Provider(Protocol):
    name: str
    # How many generations it can run at once; the API admits no more than this.
    max_concurrency: int

    async def load(self) -> None:
        """Load weights / connect. Called once at start-up, before `ready` is true."""

    @property
    def ready(self) -> bool: ...

    async def models(self) -> list[str]:
        """Model ids this provider serves."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        """Generate; closing the iterator cancels the generation."""

    async def close(self) -> None:
        """Release threads, connections and memory."""

"""The Provider contract: what the API needs from anything that generates text.

A provider turns a `GenerationRequest` into an async stream of `Delta`s. The last delta carries
`finish_reason` and `usage`. Cancelling is closing the stream (`aclose()`, or the task that
iterates it being cancelled): a provider must then stop generating within one step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "cancelled", "tool_calls"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def openai(self) -> dict[str, Any]:
        """The call in OpenAI's wire shape (responses, stream deltas, upstream requests)."""
        function = {"name": self.name, "arguments": self.arguments}
        return {"id": self.id, "type": "function", "function": function}


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # assistant turns that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments


# "auto": text or calls; "required": at least one call; "none": text; else the one tool to call.
ToolChoice = Literal["auto", "required", "none"] | str


@dataclass(frozen=True)
class ResponseFormat:
    """OpenAI's `response_format`: `json_object` (any object) or `json_schema` (`schema`)."""

    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None


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
    response_format: ResponseFormat | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # of the prompt's, reused from a cache (None: not known)

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
    tokens), so token counters stay live even for a generation that is cancelled. `tool_calls`
    are whole calls (name and complete arguments), sent once each is known.
    """

    text: str = ""
    tokens: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    timing: Timing | None = None
    tool_calls: tuple[ToolCall, ...] = ()


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


def reject_structured(request: GenerationRequest, provider: str) -> None:
    """For providers that cannot constrain their output: a 400 naming what was asked for,
    never a reply that silently ignores it."""
    asked = [name for name, value in (("response_format", request.response_format),
             ("tools", request.tools)) if value]  # fmt: skip
    if asked:
        raise ProviderError(
            f"{' and '.join(asked)}: not supported by the {provider} provider "
            "(the native and openai providers support them)",
            400,
            "unsupported_parameter",
        )


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

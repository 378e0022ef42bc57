"""OpenAI-shaped request and response models. They are the API's documentation (`/docs`).

Unknown request fields are ignored, as OpenAI-compatible servers do, so clients that send
newer parameters keep working; parameters we cannot honour are rejected with a clear 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chatworks.providers.base import Message
from chatworks.rag.answer import Citation  # the domain dataclass doubles as the API schema
from chatworks.security.audit import AuditEntry
from chatworks.security.budgets import Usage


class _Request(BaseModel):
    # Unknown fields are ignored (clients send OpenAI parameters we do not use); known ones
    # are strict: `true` is no integer and "2" no number, as the OpenAPI schema says.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def to_message(self) -> Message:
        role = "system" if self.role == "developer" else self.role
        return Message(role=role, content=self.text())


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """Parameters shared by chat and text completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # Constraints as types, not validators, so the OpenAPI schema states them (schemathesis
    # sends what the schema allows and expects it accepted).
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1, description="Only 1 is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stop_list(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    collection: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="chatworks extension: answer the last user message from this collection; "
        "the response then carries `citations` (in the finishing chunk when streaming)",
    )


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="One prompt (a string, or a list of exactly one)"
    )
    echo: Literal[False] = Field(False, description="Not supported")
    logprobs: int | None = Field(None, ge=0, le=0, description="Not supported")

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    citations: list[Citation] | None = None  # with the `collection` extension only


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chatworks"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(_Request):
    input: str | list[str] = Field(description="Text or texts to embed (token ids unsupported)")
    model: str
    # The openai client asks for base64 (float32 little-endian) by default and decodes it.
    encoding_format: Literal["float", "base64"] = "float"

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingUsage


COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class CollectionCreate(_Request):
    name: str = Field(pattern=COLLECTION_NAME)


class CollectionOut(BaseModel):
    name: str
    documents: int
    owner: str | None = None  # the tenant (a key's owner); "default" with auth off


class DocumentOut(BaseModel):
    id: str
    collection: str
    source: str
    title: str
    chunks: int
    status: str
    metadata: dict


class IngestOut(BaseModel):
    document_id: str
    source: str
    status: Literal["added", "updated", "unchanged"]
    chunks: int


class AskRequest(_Request):
    question: str = Field(min_length=1, max_length=4000)
    collection: str = Field(pattern=COLLECTION_NAME)
    top_k: int | None = Field(None, ge=1, le=50)
    stream: bool = False
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class AskResponse(BaseModel):
    answer: str
    citations: list[Citation]
    refused: bool
    usage: UsageOut


# -- keys and audit (admin) ----------------------------------------------------------------------


class RateIn(_Request):
    rpm: int | None = Field(None, ge=1, description="Requests per minute")
    tpm: int | None = Field(None, ge=1, description="Tokens (prompt + completion) per minute")
    max_parallel: int | None = Field(None, ge=1, description="Requests in flight")


class KeyCreate(RateIn):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Literal["chat", "documents", "admin"]] = Field(min_length=1)
    owner: str | None = Field(
        None, max_length=64, description="Tenant; keys with one owner share documents. "
        "Default: the key's own id",
    )  # fmt: skip
    models: list[str] | None = Field(None, description="Models the key may use (default: all)")
    collections: list[str] | None = Field(None, description="Collections it may use")
    model_limits: dict[str, RateIn] = Field(default_factory=dict, description="Per key x model")
    budget_tokens: int | None = Field(None, ge=1)
    budget_period: Literal["day", "month"] = "month"
    expires_at: datetime | None = Field(
        None,
        strict=False,
        description="ISO 8601; without a zone, UTC",  # JSON has text only
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _iso_text(cls, value: object) -> object:
        # Lax parsing would read a number as a Unix time; the schema (and people) mean a date.
        if isinstance(value, int | float):
            raise ValueError("expires_at must be an ISO 8601 date or time, not a number")
        return value


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    owner: str
    scopes: list[str]
    models: list[str] | None
    collections: list[str] | None
    limits: dict[str, Any]
    state: Literal["active", "revoked", "expired"]
    usage: Usage = Field(description="Tokens and requests in the current budget period")
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    secret: str = Field(description="Shown once: only its hash is stored")


class AuditList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AuditEntry]  # the domain dataclass doubles as the API schema


MODERATION_MODEL = "chatworks-moderation-1"  # the rules + classifier + PII recognizers shipped


class ModerationRequest(_Request):
    input: str | Annotated[list[str], Field(min_length=1, max_length=256)] = Field(
        description="Text or texts to classify"
    )
    model: str = MODERATION_MODEL

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class ModerationResult(BaseModel):
    flagged: bool
    categories: dict[str, bool] = Field(description="prompt_injection, pii")
    category_scores: dict[str, float]
    # Not in OpenAI's shape: which rules fired and which kinds of PII (never the values).
    category_details: dict[str, list[str]]


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


class UsageDayOut(BaseModel):
    """One key's use of one model on one UTC day."""

    key_id: str  # "anonymous" with auth off
    model: str
    day: str  # "2026-12-02"
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UsageDayOut]

"""OpenAI-shaped request and response models. They are the API's documentation (`/docs`).

Unknown request fields are ignored, as OpenAI-compatible servers do, so clients that send
newer parameters keep working; OpenAI parameters we cannot honour are rejected with a 400 that
names them (`_Unsupported`) rather than silently ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chatworks.providers.base import Message, ResponseFormat, Tool, ToolCall
from chatworks.providers.base import Usage as TokenCounts
from chatworks.rag.answer import Citation  # the domain dataclass doubles as the API schema
from chatworks.rag.suggest import Suggestion
from chatworks.security.audit import AuditEntry
from chatworks.security.budgets import Usage
from chatworks.security.scopes import Scope


class _Request(BaseModel):
    # Unknown fields are ignored (clients send OpenAI parameters we do not use); known ones
    # are strict: `true` is no integer and "2" no number, as the OpenAPI schema says.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class FunctionCall(_Request):
    name: str
    arguments: str = Field(description="JSON text")


class ToolCallIn(_Request):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = Field(None, description="An assistant turn's calls")
    tool_call_id: str | None = Field(None, description="A tool turn: the call it answers")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""

    def to_message(self) -> Message:
        role = "system" if self.role == "developer" else self.role
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ()
        )
        return Message(role, self.text(), calls, self.tool_call_id)


class FunctionDef(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments",
    )
    strict: bool | None = None  # calls always follow the schema here


class ToolDef(_Request):
    type: Literal["function"]
    function: FunctionDef

    def to_tool(self) -> Tool:
        f = self.function
        return Tool(f.name, f.description, f.parameters)


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"}, alias="schema", description="JSON Schema"
    )
    strict: bool | None = None  # the output always follows the schema here


class ResponseFormatIn(_Request):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormatIn:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a json_schema object")
        return self

    def to_format(self) -> ResponseFormat:
        schema = self.json_schema.schema_ if self.json_schema is not None else None
        return ResponseFormat(self.type, schema if self.type == "json_schema" else None)


class StreamOptions(_Request):
    include_usage: bool = False


_NOT_SUPPORTED = "Not supported: only the value that changes nothing is accepted"


class _Unsupported(_Request):
    """OpenAI parameters this server does not implement, typed to their no-op values: any other
    value is a 400 naming the parameter (never silently ignored), and the OpenAPI schema says so.
    """

    n: int | None = Field(None, ge=1, le=1, description=_NOT_SUPPORTED)
    logprobs: Literal[False] | None = Field(None, description=_NOT_SUPPORTED)
    top_logprobs: int | None = Field(None, ge=0, le=0, description=_NOT_SUPPORTED)
    logit_bias: Annotated[dict[str, float], Field(max_length=0)] | None = Field(
        None, description=_NOT_SUPPORTED
    )
    presence_penalty: float | None = Field(None, ge=0, le=0, description=_NOT_SUPPORTED)
    frequency_penalty: float | None = Field(None, ge=0, le=0, description=_NOT_SUPPORTED)
    functions: None = Field(None, description="Deprecated by OpenAI: send `tools`")
    function_call: None = Field(None, description="Deprecated by OpenAI: send `tool_choice`")
    audio: None = Field(None, description=_NOT_SUPPORTED)
    prediction: None = Field(None, description=_NOT_SUPPORTED)


UNSUPPORTED_PARAMS = frozenset(_Unsupported.model_fields) | {"echo", "best_of", "suffix"}


class _Sampling(_Unsupported):
    """Parameters shared by chat and text completions."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    # Constraints as types, not validators, so the OpenAPI schema states them (schemathesis
    # sends what the schema allows and expects it accepted).
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    response_format: ResponseFormatIn | None = None
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
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "required", "none"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True

    @model_validator(mode="after")
    def _tools_for_choice(self) -> ChatCompletionRequest:
        if self.tool_choice not in (None, "none") and not self.tools:
            raise ValueError("tool_choice needs tools")
        return self

    def tool_choice_name(self) -> str:
        """ "auto" (OpenAI's default with tools), "required", "none" or the function's name."""
        if self.tool_choice is None:
            return "auto"
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice


class CompletionRequest(_Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="One prompt (a string, or a list of exactly one)"
    )
    # A text completion's logprobs is a count, not a flag.
    logprobs: int | None = Field(None, ge=0, le=0, description=_NOT_SUPPORTED)  # type: ignore[assignment]
    echo: Literal[False] | None = Field(None, description=_NOT_SUPPORTED)
    best_of: int | None = Field(None, ge=1, le=1, description=_NOT_SUPPORTED)
    suffix: Literal[""] | None = Field(None, description=_NOT_SUPPORTED)

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(description="Prompt tokens whose computation was reused")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None

    @classmethod
    def of(cls, usage: TokenCounts) -> UsageOut:
        cached = usage.cached_tokens
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details=None
            if cached is None
            else PromptTokensDetails(cached_tokens=cached),
        )


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallOut:
        return cls.model_validate(call.openai())


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


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


class ChatSuggestion(BaseModel):
    prompt: str


class ChatSuggestionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ChatSuggestion]


class GroundedSuggestionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Suggestion]  # the domain dataclass doubles as the API schema: question, source


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
    scopes: list[Scope] = Field(min_length=1)
    owner: str | None = Field(
        None, max_length=64, description="Tenant; keys with one owner share documents. "
        "Default: the key's own id",
    )  # fmt: skip
    models: list[str] | None = Field(None, description="Models the key may use (default: all)")
    collections: list[str] | None = Field(None, description="Collections it may use")
    tools: list[str] | None = Field(
        None, description='MCP tools its agents may call, as "server:tool" patterns ("notes:*")'
    )
    auto_approve: list[str] | None = Field(
        None, description="Write tools (patterns) it may run without a person's approval"
    )
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
    tools: list[str] | None = None
    auto_approve: list[str] = []
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


Record = dict[str, str | int | float | bool | None]


class ClassifyRequest(_Request):
    model: str = Field(
        description="A registered lab model: NAME (its champion), NAME@ALIAS or NAME@VERSION",
        min_length=1, max_length=200,
    )  # fmt: skip
    input: str | Annotated[list[str | Record], Field(min_length=1, max_length=2048)] = Field(
        description="A text, or a list of texts or of records (column -> value)"
    )

    def records(self) -> list[str | Record]:
        return [self.input] if isinstance(self.input, str) else self.input


class Classification(BaseModel):
    index: int
    label: str = Field(description="The most probable class")
    score: float = Field(description="Its probability")
    probabilities: dict[str, float] = Field(description="Every class's probability")


class ClassifyResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    model: str
    version: str = Field(description="The registry version that answered")
    method: str
    data: list[Classification]


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

"""The Responses API's request, as OpenAI shapes it (`POST /v1/responses`): what is honoured,
and what is accepted only at the value that changes nothing (any other value is a 400 naming
it). The response body is built by `api/agent_runs.py` as plain JSON in OpenAI's shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chatworks.api.schemas import _NOT_SUPPORTED, COLLECTION_NAME, _Request

_FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionToolIn(_Request):
    """A function the client runs: calls come back as `function_call` items."""

    type: Literal["function"]
    name: str = Field(pattern=_FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    strict: bool | None = None


class FileSearchToolIn(_Request):
    """Search over chatworks collections: `vector_store_ids` are collection names."""

    type: Literal["file_search"]
    vector_store_ids: list[Annotated[str, Field(pattern=COLLECTION_NAME)]] = Field(
        min_length=1, max_length=8
    )
    max_num_results: int | None = Field(None, ge=1, le=50)


class AllowedTools(_Request):
    tool_names: list[str] = Field(default_factory=list)


class ApprovalNames(_Request):
    tool_names: list[str] = Field(default_factory=list)


class ApprovalFilter(_Request):
    always: ApprovalNames | None = None
    never: ApprovalNames | None = None


class McpToolIn(_Request):
    """The tools of an MCP server an admin registered (`chatworks mcp add`), by its label.
    `server_url`, when given, must be the registered one: no request reaches another server."""

    type: Literal["mcp"]
    server_label: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    server_url: str | None = None
    server_description: str | None = None
    allowed_tools: list[str] | AllowedTools | None = None
    require_approval: Literal["always", "never"] | ApprovalFilter | None = None
    headers: None = Field(None, description="Registered servers carry their own credentials")

    def allowed(self) -> set[str] | None:
        tools = self.allowed_tools
        if tools is None:
            return None
        return set(tools.tool_names if isinstance(tools, AllowedTools) else tools)

    def approval(self) -> str | dict[str, Any] | None:
        rule = self.require_approval
        return rule.model_dump() if isinstance(rule, ApprovalFilter) else rule


ToolIn = Annotated[FunctionToolIn | FileSearchToolIn | McpToolIn, Field(discriminator="type")]


class NamedFunctionChoice(_Request):
    type: Literal["function"]
    name: str


class McpChoice(_Request):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


class FileSearchChoice(_Request):
    type: Literal["file_search"]


ToolChoiceIn = Annotated[NamedFunctionChoice | McpChoice | FileSearchChoice,
                         Field(discriminator="type")]  # fmt: skip


class ResponseCreate(_Request):
    model: str
    input: str | list[dict[str, Any]] = Field(
        description="Text, or items: messages, function_call_output, mcp_approval_response"
    )
    instructions: str | None = None
    previous_response_id: str | None = Field(None, max_length=64)
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    max_tool_calls: int | None = Field(None, ge=1)
    tool_choice: Literal["auto", "required", "none"] | ToolChoiceIn = "auto"
    tools: list[ToolIn] = Field(default_factory=list, max_length=64)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    parallel_tool_calls: bool = True
    metadata: dict[str, str] | None = None
    user: str | None = None
    include: list[str] | None = None  # what extra to include: nothing extra exists here
    truncation: Literal["disabled"] | None = Field(None, description=_NOT_SUPPORTED)
    background: Literal[False] | None = Field(None, description=_NOT_SUPPORTED)
    top_logprobs: int | None = Field(None, ge=0, le=0, description=_NOT_SUPPORTED)

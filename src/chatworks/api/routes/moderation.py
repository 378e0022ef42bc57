"""`POST /v1/moderations`, in OpenAI's shape, with chatworks' own categories: `prompt_injection`
(rules + classifier) and `pii` (emails, phones, cards, IBANs, SSNs, IPs, secrets). Scope `chat`;
a key's request limits apply (it costs no tokens)."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Depends

from chatworks.api.errors import APIError
from chatworks.api.quota import moderation_quota
from chatworks.api.schemas import (
    MODERATION_MODEL,
    ModerationRequest,
    ModerationResponse,
    ModerationResult,
)
from chatworks.api.service import Service, get_service
from chatworks.security.moderation import PII, PROMPT_INJECTION, count, moderate

router = APIRouter(prefix="/v1", tags=["openai"])


def _result(text: str) -> ModerationResult:
    found = moderate(text)
    count(found, "moderations")
    return ModerationResult(
        flagged=found.flagged,
        categories=found.categories,
        category_scores=found.category_scores,
        category_details={PROMPT_INJECTION: found.injection.flags, PII: found.pii_kinds},
    )


@router.post(
    "/moderations", response_model=ModerationResponse, dependencies=[Depends(moderation_quota)]
)
async def moderations(
    body: ModerationRequest, service: Service = Depends(get_service)
) -> ModerationResponse:
    if body.model != MODERATION_MODEL:
        raise APIError(
            400, f"model must be '{MODERATION_MODEL}' (or left out)", "invalid_model", "model"
        )
    texts = body.texts()
    limit = service.settings.max_message_chars
    for i, text in enumerate(texts):
        if len(text) > limit:
            raise APIError(413, f"input {i} has {len(text)} characters; the limit is {limit}",
                           "input_too_long", "input")  # fmt: skip
    # Regexes, n-grams and MiniLM: tens of ms a text, kept off the event loop.
    results = await asyncio.to_thread(lambda: [_result(t) for t in texts])
    return ModerationResponse(id=f"modr-{uuid.uuid4().hex}", model=body.model, results=results)

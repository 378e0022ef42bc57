"""`POST /v1/classify`: a classifier trained and registered by `chatworks lab train`, by name
(its champion), `name@alias` or `name@version`; labels with probabilities for one input or a
list. Scope `chat`; the key's limits and model list apply under the registered name."""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import APIRouter, Depends, Request

from chatworks.api.errors import APIError
from chatworks.api.openapi import errors
from chatworks.api.quota import model_in_body, quota
from chatworks.api.schemas import Classification, ClassifyRequest, ClassifyResponse
from chatworks.api.service import Service, get_service
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t

router = APIRouter(prefix="/v1", tags=["lab"])


async def classifier_name(request: Request, service: Service) -> str | None:
    """Limits and a key's model list see the registered name, whatever alias is asked."""
    model = await model_in_body(request, service)
    return model.partition("@")[0] if model else None


classify_quota = quota("chat", classifier_name)


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    dependencies=[Depends(classify_quota)],
    responses=errors(404, 413),  # no such registered model / version / alias; input too long
)
async def classify(
    body: ClassifyRequest, service: Service = Depends(get_service)
) -> ClassifyResponse:
    from chatworks.lab.serving import UnknownModel

    records = body.records()
    limit = service.settings.max_message_chars
    for i, record in enumerate(records):
        size = len(record) if isinstance(record, str) else sum(len(str(v)) for v in record.values())
        if size > limit:
            raise APIError(413, f"input {i} has {size} characters; the limit is {limit}",
                           "input_too_long", "input")  # fmt: skip
    attributes = {t.OPERATION: "classify", t.REQUEST_MODEL: body.model}
    started = time.perf_counter()
    with t.tracer().start_as_current_span(f"classify {body.model}", attributes=attributes) as span:
        try:
            served, proba = await asyncio.to_thread(service.classifiers.predict, body.model,
                                                    records)  # fmt: skip
        except UnknownModel as exc:
            raise APIError(404, str(exc), "model_not_found", "model") from None
        except (ValueError, TypeError, KeyError) as exc:  # records that do not fit the model
            raise APIError(400, f"input does not fit model '{body.model}': {exc}",
                           "invalid_input", "input") from None  # fmt: skip
        span.set_attribute("chatworks.classify.version", served.version)
    metrics.CLASSIFY_SECONDS.labels(served.name).observe(time.perf_counter() - started)
    labels = served.classifier.labels
    data = []
    for i, row in enumerate(proba):
        best = int(row.argmax())
        metrics.CLASSIFY_PREDICTIONS.labels(served.name, labels[best]).inc()
        data.append(Classification(
            index=i, label=labels[best], score=round(float(row[best]), 6),
            probabilities={label: round(float(p), 6) for label, p in zip(labels, row, strict=True)},
        ))  # fmt: skip
    return ClassifyResponse(id=f"clf-{uuid.uuid4().hex}", model=served.name,
                            version=served.version, method=served.classifier.manifest["method"],
                            data=data)  # fmt: skip

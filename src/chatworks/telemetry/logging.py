"""JSON log lines through structlog, with the request id and the trace ids of the request.

Prompts and answers are not logged unless CHATWORKS_LOG_CONTENT=true (api/generation.py), and
then with PII redacted (security/pii.py).
"""

from __future__ import annotations

import logging
import sys

import structlog

from chatworks.telemetry.tracing import current_ids


def add_trace_ids(_logger, _method, event: dict) -> dict:
    """`trace_id` and `span_id` of the active span, so a log line leads to its trace. The ids
    exist when tracing is on, or when a client sent a `traceparent` (then they are the client's)."""
    ids = current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


def configure_logging(level: str = "info") -> None:
    """One JSON object per line on stdout; uvicorn's own access log is replaced by ours."""
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("uvicorn.access").disabled = True


def get_logger(name: str = "chatworks") -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)

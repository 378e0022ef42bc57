"""JSON log lines through structlog, with the request id bound per request.

Prompts and answers are not logged unless CHATWORKS_LOG_CONTENT=true (api/generation.py), and
then with PII redacted (security/pii.py).
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "info") -> None:
    """One JSON object per line on stdout; uvicorn's own access log is replaced by ours."""
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
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

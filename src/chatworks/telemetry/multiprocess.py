"""Prometheus metrics across several uvicorn workers (`chatworks serve --workers N`).

Each worker is its own process with its own counters; a scrape reaches one of them. In
prometheus_client's multiprocess mode every worker writes its samples to files in
`PROMETHEUS_MULTIPROC_DIR`, and `/metrics` sums them (gauges per their `multiprocess_mode`).
The variable must be set before the workers import prometheus_client, so `serve` sets it in the
parent process; the workers inherit it.

Not aggregated: collectors that read live objects at scrape time (the native engine's stats,
`process_*`) describe one process, so they are left out of a multiprocess scrape rather than
reported as if they were the whole.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_ENV = "PROMETHEUS_MULTIPROC_DIR"


def enabled() -> bool:
    return bool(os.environ.get(_ENV))


def prepare(directory: Path) -> None:
    """Empty `directory` and point prometheus_client at it (call once, before workers start):
    files left by an earlier run would be counted again."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[_ENV] = str(directory)


def registry():
    """A registry that reads every worker's files, for one scrape."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    merged = CollectorRegistry()
    MultiProcessCollector(merged)
    return merged


def worker_exited() -> None:
    """Drop this worker's live gauges (in-flight, running, ...) when it stops."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())

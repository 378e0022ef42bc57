"""`chatworks spark embed`: files -> chunks -> vectors in Spark tasks, then one bulk load into
Postgres + pgvector (`load.py`), searchable by `chatworks serve` like a local `chatworks ingest`.

Each task runs `rag/ingest.py`'s own steps on its files: the same limits, fingerprint (so an
unchanged file is skipped, and a later local ingest sees it as unchanged too), parsing,
chunking, injection flags and embedding with the same model and batches; every Python worker
loads the embedder once. The results are kept on the executors' disks until all are embedded,
so the load's table lock lasts only as long as the COPY and the index build.
Not covered: `--prune` and a collection's owner (use `chatworks ingest` for those), SQLite (the
bulk load is Postgres's COPY).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy.orm import Session

from chatworks.rag import sources
from chatworks.rag.embed import LocalEmbedder, embedding_model_path, load_tokenizer
from chatworks.rag.errors import IngestError
from chatworks.rag.ingest import (
    IngestResult,
    PreparedDocument,
    check_limits,
    document_fingerprint,
    prepare_document,
)
from chatworks.rag.types import NewDocument
from chatworks.settings import Settings
from chatworks.spark.load import bulk_load
from chatworks.storage import documents, open_database

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass(frozen=True)
class FileResult:
    """What a task made of one file; `prepared` only for "added" and "updated"."""

    path: str
    status: Literal["added", "updated", "unchanged", "failed"]
    document: NewDocument | None = None
    prepared: PreparedDocument | None = None
    error: str | None = None


_MAX_PARTITIONS = 2048
_models: dict[str, tuple[LocalEmbedder, object]] = {}  # per Python worker, loaded once


def _embedder_and_tokenizer(settings: Settings):
    if settings.embedding_model not in _models:
        _models[settings.embedding_model] = (
            LocalEmbedder.from_settings(settings),
            load_tokenizer(embedding_model_path(settings)),
        )
    return _models[settings.embedding_model]


def _prepare_file(
    settings: Settings, collection: str, known: dict[str, str], found: sources.Found
) -> FileResult:
    path = Path(found.path)
    try:
        if found.problem:
            raise IngestError(found.problem)
        check_limits(path.name, path.stat().st_size, settings)
        data = path.read_bytes()
        fingerprint = document_fingerprint(data, {}, settings)
        if known.get(found.source) == fingerprint:
            return FileResult(str(path), "unchanged")
        embedder, tokenizer = _embedder_and_tokenizer(settings)
        prepared = prepare_document(embedder, tokenizer, settings, data, path.name)
    except (IngestError, OSError) as e:
        return FileResult(str(path), "failed", error=str(e))
    document = NewDocument(collection, found.source, prepared.title, fingerprint, {}, "file")
    status = "updated" if found.source in known else "added"
    return FileResult(str(path), status, document, prepared)


def _tally(
    results: Iterable[FileResult], result: IngestResult
) -> Iterator[tuple[NewDocument, PreparedDocument]]:
    """The (document, prepared) pairs to load, counting every file into `result` on the way."""
    for r in results:
        setattr(result, r.status, getattr(result, r.status) + 1)
        if r.error:
            result.errors[r.path] = r.error
        if r.document is not None and r.prepared is not None:
            yield r.document, r.prepared


def spark_embed(
    spark: SparkSession,
    settings: Settings,
    paths: Iterable[Path],
    collection: str,
    root: Path | None = None,
) -> IngestResult:
    """Ingest files and directories into `collection` on the Postgres of `settings`, embedding
    on Spark. Files are named as `chatworks ingest` names them (`rag/sources.py`)."""
    from pyspark import StorageLevel

    started = time.perf_counter()
    engine = open_database(settings)
    if engine.dialect.name != "postgresql":
        raise ValueError("spark embed loads Postgres: set CHATWORKS_DATABASE_URL=postgresql://...")
    found, _ = sources.find(paths, settings.allowed_file_types, root)
    with Session(engine) as session:
        known = {d.source: d.content_hash for d in documents.list_documents(session, collection)}
    sc = spark.sparkContext
    # One file per task (up to a cap): files differ in size by orders of magnitude, and few
    # large partitions leave cores idle behind the one that holds the longest files. Each
    # Python worker loads the embedder once, however many tasks it runs.
    partitions = max(1, min(len(found), _MAX_PARTITIONS))
    # parallelize gives each partition a contiguous slice of the list, and toLocalIterator
    # reads partitions in order: documents load in file order, as a local ingest stores them.
    prepared = (
        sc.parallelize(found, partitions)
        .map(partial(_prepare_file, settings, collection, known))
        .persist(StorageLevel.DISK_ONLY)
    )
    try:
        prepared.count()  # every file embedded before the load takes its locks
        result = IngestResult()
        result.chunks = bulk_load(engine, _tally(prepared.toLocalIterator(), result))
    finally:
        prepared.unpersist()
        engine.dispose()
    result.seconds = time.perf_counter() - started
    return result

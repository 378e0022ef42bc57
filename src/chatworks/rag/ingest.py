"""Ingestion: files -> parsed text -> chunks (flagged for injection) -> vectors -> index.

Idempotent: a document is identified by (collection, source) and fingerprinted by its bytes,
its metadata and the settings that shape its chunks; an unchanged fingerprint is skipped, a
changed one replaces the document's chunks. Transactional: everything slow (parse, chunk, embed)
happens before the single write transaction of `Index.replace_document`, so a crash or a kill
leaves either the old document or the new one, never a part. One document per transaction:
a directory interrupted halfway keeps the files it finished.
Files from disk are named relative to where they were ingested (`rag/sources.py`), uploads by
their file name: a source is shown to clients, so it never holds a server path.
Not covered: the progress bar itself (the CLI renders `IngestProgress`), OCR, crawling URLs.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from tokenizers import Tokenizer

from chatworks.rag import sources
from chatworks.rag.chunk import chunk_document
from chatworks.rag.embed import LocalEmbedder, embedding_model_path, load_tokenizer
from chatworks.rag.errors import FileTooLarge, IngestError, UnsupportedFileType
from chatworks.rag.index_sql import SqlIndex, open_index
from chatworks.rag.injection import detect_many
from chatworks.rag.parse import file_type, parse_bytes
from chatworks.rag.types import Embedder, NewDocument, Passage
from chatworks.settings import Settings
from chatworks.storage import documents, open_database
from chatworks.telemetry import metrics


@dataclass(frozen=True)
class IngestContext:
    """What ingestion needs, built once per process (loading the model takes seconds)."""

    index: SqlIndex
    embedder: Embedder
    tokenizer: Tokenizer
    settings: Settings

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine | None = None, embedder: Embedder | None = None
    ) -> IngestContext:
        index = open_index(engine or open_database(settings))
        embedder = embedder or LocalEmbedder.from_settings(settings)
        if embedder.dim != index.dim:
            raise ValueError(
                f"embedder {embedder.model_id} makes {embedder.dim}-d vectors, the index "
                f"stores {index.dim}-d: a different embedder needs a new migration"
            )
        tokenizer = load_tokenizer(embedding_model_path(settings))
        return cls(index=index, embedder=embedder, tokenizer=tokenizer, settings=settings)


Stage = Literal["parse", "embed", "store", "done", "failed"]


@dataclass(frozen=True)
class IngestProgress:
    """One progress report: file `file_index` (0-based) of `file_count` is at `stage`;
    during "embed", `done` of `total` chunks are embedded."""

    source: str
    file_index: int
    file_count: int
    stage: Stage
    done: int = 0
    total: int = 0


ProgressFn = Callable[[IngestProgress], None]


@dataclass(frozen=True)
class FileOutcome:
    source: str
    document_id: str
    status: Literal["added", "updated", "unchanged"]
    chunks: int


@dataclass
class IngestResult:
    """The summary of a run. `chunks` counts chunks written (unchanged files add none)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    deleted: int = 0
    chunks: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)  # path as given -> message


# Bumped whenever what is embedded for a chunk changes, so `ingest` re-embeds unchanged files.
_EMBEDDED_TEXT_VERSION = 2  # 2: the chunk's title and section path are embedded with its text


def document_fingerprint(data: bytes, metadata: Mapping[str, object], settings: Settings) -> str:
    digest = hashlib.sha256(data)
    shape = [
        settings.embedding_model, settings.chunk_tokens, settings.chunk_overlap_tokens,
        _EMBEDDED_TEXT_VERSION,
    ]  # fmt: skip
    digest.update(json.dumps([shape, metadata], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def check_limits(filename: str, size: int, settings: Settings) -> None:
    """Raise FileTooLarge / UnsupportedFileType before any work is done (the API calls this
    on upload headers, too)."""
    kind = file_type(filename)
    if kind not in settings.allowed_file_types:
        raise UnsupportedFileType(f"{filename}: file type {kind!r} is not allowed here")
    if size > settings.max_upload_bytes:
        raise FileTooLarge(
            f"{filename} is {size:,} bytes; the limit is {settings.max_upload_bytes:,}"
        )


def ingest_bytes(
    ctx: IngestContext,
    data: bytes,
    filename: str,
    collection: str,
    *,
    source: str | None = None,
    origin: Literal["file", "upload"] = "upload",
    metadata: Mapping[str, object] | None = None,
    progress: ProgressFn | None = None,
    file_index: int = 0,
    file_count: int = 1,
) -> FileOutcome:
    """Ingest one file's bytes (an upload). `source` identifies the document in `collection`
    (default: `filename`); `origin` "file" lets `--prune` delete it later. Raises an
    IngestError subclass for bad input."""
    source = source or filename
    metadata = dict(metadata or {})

    def report(stage: Stage, done: int = 0, total: int = 0) -> None:
        if progress:
            progress(IngestProgress(source, file_index, file_count, stage, done, total))

    check_limits(filename, len(data), ctx.settings)
    fingerprint = document_fingerprint(data, metadata, ctx.settings)
    with Session(ctx.index.engine) as session:
        existing = documents.find_document(session, collection, source)
    if existing and existing.content_hash == fingerprint:
        report("done")
        return FileOutcome(source, existing.id, "unchanged", existing.chunks)

    report("parse")
    prepared = prepare_document(
        ctx.embedder, ctx.tokenizer, ctx.settings, data, filename,
        lambda done, total: report("embed", done, total),
    )  # fmt: skip
    passages = prepared.passages
    report("store")
    document_id = ctx.index.replace_document(
        NewDocument(collection, source, prepared.title, fingerprint, metadata, origin),
        passages,
        prepared.vectors,
    )
    report("done")
    return FileOutcome(source, document_id, "updated" if existing else "added", len(passages))


def embedded_text(title: str, passage: Passage) -> str:
    """What the vector of a chunk is computed from: its text under its title and section path.
    A chunk cut from the middle of "Train your own model" rarely repeats those words, yet a
    question about training is about it (contextual chunk headers); the stored text and the
    keyword index stay the chunk's own words."""
    where = " > ".join(part for part in (title, passage.section) if part)
    return f"{where}\n{passage.text}" if where else passage.text


@dataclass(frozen=True)
class PreparedDocument:
    """A file made ready to store: its title, its chunks and their vectors (row i of
    `vectors` is chunk i's)."""

    title: str
    passages: list[Passage]
    vectors: np.ndarray


def prepare_document(
    embedder: Embedder,
    tokenizer: Tokenizer,
    settings: Settings,
    data: bytes,
    filename: str,
    on_embed: Callable[[int, int], None] | None = None,
) -> PreparedDocument:
    """Parse, chunk, flag and embed one file's bytes: the slow part of ingestion, with no
    database (`chatworks spark embed` runs it in Spark tasks). `on_embed(done, total)` follows
    the embedding, batch by batch."""
    parsed = parse_bytes(data, filename)
    chunks = chunk_document(parsed, tokenizer, settings.chunk_tokens,
                            settings.chunk_overlap_tokens)  # fmt: skip
    texts = [embedded_text(parsed.title, p) for p in chunks]  # what the index embeds
    report = on_embed or (lambda done, total: None)
    batch = settings.embedding_batch_size
    parts = [np.zeros((0, embedder.dim), dtype=np.float32)]
    report(0, len(texts))
    for i in range(0, len(texts), batch):
        parts.append(embedder.embed(texts[i : i + batch]))
        report(min(i + batch, len(texts)), len(texts))
    vectors = np.concatenate(parts)
    # The guard's MiniLM head reads the vector the index stores (the chunk under its title):
    # with the bundled MiniLM as RAG's embedder, no second pass over every chunk. Its rules and
    # n-grams read the chunk's own words (docs/benchmarks.md: on docs/ this flags as many
    # chunks as embedding the bare chunk again did).
    verdicts = detect_many([p.text for p in chunks], known=(embedder, vectors))
    passages = [replace(p, metadata={"injection": v.flags}) if v.flags else p
                for p, v in zip(chunks, verdicts, strict=True)]  # fmt: skip
    metrics.FLAGGED_CHUNKS.inc(sum(1 for p in passages if "injection" in p.metadata))
    return PreparedDocument(parsed.title, passages, vectors)


def ingest_file(
    ctx: IngestContext,
    path: Path,
    collection: str,
    *,
    source: str | None = None,
    metadata: Mapping[str, object] | None = None,
    progress: ProgressFn | None = None,
    file_index: int = 0,
    file_count: int = 1,
) -> FileOutcome:
    """Ingest one file from disk as `source` (default: its name; `ingest_path` names it by
    `rag/sources.py`). Checks the limits before reading."""
    path = Path(path)
    check_limits(path.name, path.stat().st_size, ctx.settings)
    return ingest_bytes(
        ctx,
        path.read_bytes(),
        path.name,
        collection,
        source=source or path.name,
        origin="file",
        metadata=metadata,
        progress=progress,
        file_index=file_index,
        file_count=file_count,
    )


def ingest_path(
    ctx: IngestContext,
    paths: Iterable[Path],
    collection: str,
    *,
    root: Path | None = None,
    metadata: Mapping[str, object] | None = None,
    progress: ProgressFn | None = None,
    prune: bool = False,
) -> IngestResult:
    """Ingest files and directories (recursively) into `collection`, each file named by
    `rag/sources.py` (relative to `root` when given). A file that cannot be ingested is counted
    in `failed` with its message; the others carry on. With `prune`, documents ingested from
    disk whose source lies under one of the given directories' names but that this run did not
    find are deleted (how a removed file leaves the collection); uploads are never pruned."""
    started = time.perf_counter()
    found, directories = sources.find(paths, ctx.settings.allowed_file_types, root)
    result = IngestResult()
    for i, item in enumerate(found):
        try:
            if item.problem:
                raise IngestError(item.problem)
            outcome = ingest_file(
                ctx,
                item.path,
                collection,
                source=item.source,
                metadata=metadata,
                progress=progress,
                file_index=i,
                file_count=len(found),
            )
        except (IngestError, OSError) as e:
            result.failed += 1
            result.errors[str(item.path)] = str(e)
            if progress:
                progress(IngestProgress(str(item.path), i, len(found), "failed"))
            continue
        setattr(result, outcome.status, getattr(result, outcome.status) + 1)
        if outcome.status != "unchanged":
            result.chunks += outcome.chunks
    if prune:
        # A file that failed this time is still there: its previous version stays.
        present = {f.source for f in found if f.source}
        result.deleted = _prune(ctx, collection, directories, present)
    result.seconds = time.perf_counter() - started
    return result


def _prune(ctx: IngestContext, collection: str, directories: list[str], present: set[str]) -> int:
    # Sources are relative, so "under this directory" is a prefix of the name, and which
    # documents came from disk at all is the stored origin: an upload named `docs/x.md` is not
    # a file that disappeared from `docs/`.
    with Session(ctx.index.engine) as session:
        known = documents.list_documents(session, collection)
    gone = [
        d.id
        for d in known
        if d.origin == "file"
        and d.source not in present
        and any(sources.within(d.source, directory) for directory in directories)
    ]
    return sum(ctx.index.delete_document(document_id) for document_id in gone)

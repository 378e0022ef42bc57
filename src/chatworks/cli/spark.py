"""`chatworks spark ...`: the corpus prep and bulk embedding jobs on Apache Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatworks.cli.documents import CollectionOption, report_ingest
from chatworks.cli.shared import console, settings_from_flags
from chatworks.cli.training import CorpusOption, PresetOption

app = typer.Typer(
    help="Spark jobs: corpus prep and bulk embedding (local[2] here, a cluster URL elsewhere)."
)

MasterOption = Annotated[
    str | None,
    typer.Option(help="Spark master: local[N] or a cluster URL such as spark://host:7077 "
                 "(default: CHATWORKS_SPARK_MASTER, local[2])."),
]  # fmt: skip


@app.command("prep")
def prep(
    tokenizer: Annotated[Path, typer.Option(help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option(help="Directory for shards + manifest.json.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
    master: MasterOption = None,
) -> None:
    """Clean, dedupe, split and tokenize a corpus into shards on Spark: the same shards as
    `chatworks train data` (resumable the same way)."""
    from chatworks.spark.prep import spark_prepare_corpus
    from chatworks.spark.session import start_session
    from chatworks.training.corpus import default_sources
    from chatworks.training.presets import get_preset

    settings = settings_from_flags(spark_master=master)
    p = get_preset(preset)
    with console.status(f"preparing on {settings.spark_master}..."):
        spark = start_session(settings.spark_master, "chatworks-prep")
        try:
            m = spark_prepare_corpus(spark, corpus or default_sources(), tokenizer, out,
                                     p.corpus_bytes, p.val_fraction)  # fmt: skip
        finally:
            spark.stop()
    console.print(f"train {m.tokens('train'):,} tokens, val {m.tokens('val'):,} tokens -> {out}")


@app.command("embed")
def embed(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files or directories, named as `chatworks ingest` names them."),
    ],
    collection: CollectionOption = "default",
    master: MasterOption = None,
) -> None:
    """Chunk and embed documents on Spark, then bulk-load them into Postgres + pgvector (binary
    COPY, vector index rebuilt after the load). Needs CHATWORKS_DATABASE_URL=postgresql://..."""
    import sqlalchemy as sa

    from chatworks.spark.embed import spark_embed
    from chatworks.spark.session import start_session
    from chatworks.storage import database_url

    settings = settings_from_flags(spark_master=master)
    if sa.make_url(database_url(settings)).get_backend_name() != "postgresql":
        console.print("[red]error:[/] spark embed loads Postgres: set CHATWORKS_DATABASE_URL")
        raise typer.Exit(2)
    with console.status(f"embedding on {settings.spark_master}..."):
        spark = start_session(settings.spark_master, "chatworks-embed")
        try:
            result = spark_embed(spark, settings, paths, collection)
        finally:
            spark.stop()
    report_ingest(collection, result)

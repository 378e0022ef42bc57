"""Documents and grounded answers: `ingest`, `collections`, `ask`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from chatworks.cli.shared import console, settings_from_flags

CollectionOption = Annotated[str, typer.Option(help="Collection name.")]


def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or directories to ingest. A file is named by its path from "
            "the current directory, or from its argument's parent if outside it."
        ),
    ],
    collection: CollectionOption = "default",
    prune: Annotated[
        bool, typer.Option(help="Remove documents whose files are gone from these paths.")
    ] = False,
    owner: Annotated[
        str | None,
        typer.Option(help="Tenant that owns a new collection (a key's owner); default: default."),
    ] = None,
) -> None:
    """Add documents to a collection (idempotent: unchanged files are skipped)."""
    from rich.progress import Progress

    from chatworks.rag.ingest import ingest_path
    from chatworks.rag.library import Library
    from chatworks.storage import documents as docs

    library = Library(settings_from_flags())
    if owner is not None:  # claim the collection first: ingestion finds it and keeps its owner
        with library.session() as session, session.begin():
            holder = docs.get_or_create_collection(session, collection, owner).owner
        if holder != owner:
            console.print(f"[red]error:[/] collection {collection} belongs to {holder}")
            raise typer.Exit(2)
    with console.status("loading the embedding model..."):
        context = library.context
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("ingesting", total=None)

        def progress(p) -> None:
            bar.update(task, total=p.file_count, completed=p.file_index,
                       description=f"{p.stage} {Path(p.source).name}")  # fmt: skip

        result = ingest_path(context, paths, collection, progress=progress, prune=prune)
    report_ingest(collection, result)


def report_ingest(collection: str, result) -> None:
    """The summary of an ingest (`rag.ingest.IngestResult`); exit code 1 if a file failed."""
    console.print(
        f"[bold]{collection}[/]: {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.deleted} deleted, {result.failed} failed; "
        f"{result.chunks} chunks in {result.seconds:.1f} s"
    )
    for source, message in result.errors.items():
        console.print(f"[red]failed[/] {source}: {message}", highlight=False)
    if result.failed:
        raise typer.Exit(1)


def collections() -> None:
    """List collections, their document counts and owners (when not the default)."""
    from chatworks.rag.library import Library
    from chatworks.storage import documents as docs
    from chatworks.storage.models import DEFAULT_OWNER

    with Library(settings_from_flags()).session() as session:
        for c in docs.list_collections(session):
            tenant = "" if c.owner == DEFAULT_OWNER else f"\towner {c.owner}"
            console.print(f"{c.name}\t{c.documents} documents{tenant}")


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOption = "default",
    top_k: Annotated[int | None, typer.Option(help="Passages to give the model.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Answer from a collection with citations (in this process, no server needed)."""
    import json
    from dataclasses import asdict

    from chatworks.providers.registry import create_provider
    from chatworks.rag.answer import Grounded, answer_greedily
    from chatworks.rag.library import Library

    settings = settings_from_flags()
    prepared = Library(settings).prepare(question, collection, top_k)
    result = prepared.answer
    if result is None:  # only load the model when there is something to generate
        provider = create_provider(settings)

        async def generate() -> Grounded:
            await provider.load()
            try:
                return await answer_greedily(
                    provider, settings.model, question, prepared, max_tokens
                )
            finally:
                await provider.close()

        result = asyncio.run(generate())
    if as_json:
        console.print_json(json.dumps(asdict(result)))
        return
    console.print(result.answer, markup=False, highlight=False)
    for c in result.citations:
        where = ", ".join(x for x in (c.title or c.source, c.section,
                                      f"page {c.page}" if c.page else None) if x)  # fmt: skip
        console.print(f"  [{c.index}] {where} (chars {c.start}-{c.end})", markup=False)

"""The `chatworks` command line: a thin shell over the packages (parse, call, print)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chatworks.settings import Settings

app = typer.Typer(
    help="chatworks: train, serve, ground and observe a chat model.", no_args_is_help=True
)
console = Console()

UrlOption = Annotated[
    str | None,
    typer.Option(help="Base URL of a running chatworks (or any OpenAI-compatible) server, "
    "e.g. http://127.0.0.1:8000/v1. Without it, the model runs in this process."),
]  # fmt: skip


def _settings(**overrides) -> Settings:
    """Settings from env/.env, with the flags the user actually passed taking precedence."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    provider: Annotated[
        str | None, typer.Option(help="transformers (local model) or openai (upstream).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model id to serve, or a path to load (a run directory such as "
            "runs/NAME, a .gguf file, an HF directory); its name becomes the id."
        ),
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Model to load, served under --model as its id.")
    ] = None,
    upstream_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible upstream for --provider openai.")
    ] = None,
    upstream_key: Annotated[str | None, typer.Option(help="API key for the upstream.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads.")] = None,
) -> None:
    """Serve the OpenAI-compatible API and the web UI."""
    import uvicorn

    from chatworks.api.app import create_app
    from chatworks.telemetry.logging import configure_logging

    settings = _settings(
        host=host, port=port, provider=provider, model=model, model_path=model_path,
        upstream_url=upstream_url, upstream_key=upstream_key, threads=threads,
    )  # fmt: skip
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]chatworks[/] serving [cyan]{settings.model}[/] ({settings.provider}) on "
        f"http://{settings.host}:{settings.port}", highlight=False,
    )  # fmt: skip
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def models(url: UrlOption = None) -> None:
    """List the models a server (or this process's configuration) serves."""
    if url:
        import openai

        for m in openai.OpenAI(base_url=url, api_key="none").models.list().data:
            console.print(m.id)
        return
    console.print(_settings().model)


@app.command()
def chat(
    url: UrlOption = None,
    model: Annotated[str | None, typer.Option(help="Model id.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 512,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy.")] = 0.7,
) -> None:
    """Chat in the terminal, streaming answers. Ctrl-D or an empty line quits."""
    from chatworks.providers.base import GenerationRequest, Message
    from chatworks.providers.registry import create_provider

    # A remote server is just the `openai` provider pointed at it: one chat loop for both.
    overrides = {"provider": "openai", "upstream_url": url} if url else {}
    settings = _settings(model=model, **overrides)
    provider = create_provider(settings)
    history = [Message("system", system)] if system else []

    async def run() -> None:
        with console.status("loading model..."):
            await provider.load()
        console.print(f"[dim]chatting with {settings.model}; empty line or Ctrl-D quits[/]")
        while question := _read_line():
            history.append(Message("user", question))
            request = GenerationRequest(
                model=settings.model, messages=tuple(history),
                max_tokens=max_tokens, temperature=temperature,
            )  # fmt: skip
            answer = []
            async for delta in provider.stream(request):
                console.print(delta.text, end="", markup=False, highlight=False)
                answer.append(delta.text)
            console.print()
            history.append(Message("assistant", "".join(answer)))
        await provider.close()

    asyncio.run(run())


def _read_line() -> str:
    try:
        return console.input("[bold green]you>[/] ").strip()
    except EOFError:
        return ""


# --- documents -------------------------------------------------------------------------------

CollectionOption = Annotated[str, typer.Option(help="Collection name.")]


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to ingest.")],
    collection: CollectionOption = "default",
    prune: Annotated[
        bool, typer.Option(help="Remove documents whose files are gone from these paths.")
    ] = False,
) -> None:
    """Add documents to a collection (idempotent: unchanged files are skipped)."""
    from rich.progress import Progress

    from chatworks.rag.ingest import ingest_path
    from chatworks.rag.library import Library

    library = Library(_settings())
    with console.status("loading the embedding model..."):
        context = library.context
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("ingesting", total=None)

        def progress(p) -> None:
            bar.update(task, total=p.file_count, completed=p.file_index,
                       description=f"{p.stage} {Path(p.source).name}")  # fmt: skip

        result = ingest_path(context, paths, collection, progress=progress, prune=prune)
    console.print(
        f"[bold]{collection}[/]: {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.deleted} deleted, {result.failed} failed; "
        f"{result.chunks} chunks in {result.seconds:.1f} s"
    )
    for source, message in result.errors.items():
        console.print(f"[red]failed[/] {source}: {message}", highlight=False)
    if result.failed:
        raise typer.Exit(1)


@app.command()
def collections() -> None:
    """List collections and their document counts."""
    from chatworks.rag.library import Library
    from chatworks.storage import documents as docs

    with Library(_settings()).session() as session:
        for c in docs.list_collections(session):
            console.print(f"{c.name}\t{c.documents} documents")


@app.command()
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

    from chatworks.providers.base import GenerationRequest
    from chatworks.providers.registry import create_provider
    from chatworks.rag.answer import REFUSAL, Grounded, ground
    from chatworks.rag.library import Library

    settings = _settings()
    prepared = Library(settings).prepare(question, collection, top_k)
    if prepared.messages is None:
        result = Grounded(REFUSAL, [], True, 0)
    else:
        provider = create_provider(settings)

        async def generate() -> str:
            await provider.load()
            request = GenerationRequest(model=settings.model, messages=prepared.messages,
                                        max_tokens=max_tokens, temperature=0)  # fmt: skip
            text = "".join([d.text async for d in provider.stream(request)])
            await provider.close()
            return text

        result = ground(asyncio.run(generate()), prepared.sources)
    if as_json:
        console.print_json(json.dumps(asdict(result)))
        return
    console.print(result.answer, markup=False, highlight=False)
    for c in result.citations:
        where = ", ".join(x for x in (c.title or c.source, c.section,
                                      f"page {c.page}" if c.page else None) if x)  # fmt: skip
        console.print(f"  [{c.index}] {where} (chars {c.start}-{c.end})", markup=False)


# --- evals -----------------------------------------------------------------------------------

eval_app = typer.Typer(help="Evaluate retrieval and grounded answers against a golden set.")
app.add_typer(eval_app, name="eval")

DatasetOption = Annotated[
    Path | None, typer.Option(help="JSONL golden set (see docs/evals.md); default: the bundled "
                       "Python-docs dev set."),
]  # fmt: skip
EvalCollectionOption = Annotated[str, typer.Option(help="Collection to evaluate.")]
OutOption = Annotated[Path, typer.Option(help="Directory for the JSON and Markdown reports.")]
CorpusRootOption = Annotated[
    Path | None,
    typer.Option(help="Ingest the dataset's corpus subset (its .sources.txt) from this root "
                 "first, e.g. /usr/share/doc/python3.11/html/_sources."),
]  # fmt: skip


def _eval_library(dataset: Path, collection: str, corpus_root: Path | None):
    from chatworks.evals.datasets import corpus_files, load_dataset
    from chatworks.rag.ingest import ingest_path
    from chatworks.rag.library import Library

    items = load_dataset(dataset)
    library = Library(_settings())
    with console.status("loading the embedding model..."):
        library.context  # noqa: B018 (loads it now, not under the progress bar)
    if corpus_root:
        with console.status("ingesting the corpus subset..."):
            result = ingest_path(library.context, corpus_files(dataset, corpus_root), collection)
        console.print(f"{collection}: {result.added + result.updated} ingested, "
                      f"{result.unchanged} unchanged, {result.failed} failed")  # fmt: skip
    return items, library


def _run_with_bar(description: str, run):
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)
        return run(lambda done, total: bar.update(task, completed=done, total=total))


def _finish_eval(report, out: Path, failures: list[str]) -> None:
    from rich.table import Table

    from chatworks.evals.report import write_reports

    table = Table(title=f"{report.kind} eval: {report.collection} ({len(report.questions)} q)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in report.metrics.items():
        table.add_row(name, "n/a" if value is None else f"{value:.3f}")
    console.print(table)
    json_path, md_path = write_reports(report, out)
    console.print(f"reports: {json_path} {md_path}", highlight=False)
    for failure in failures:
        console.print(f"[red]FAIL[/] {failure}", highlight=False)
    if failures:
        raise typer.Exit(1)


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: DatasetOption = None,
    collection: EvalCollectionOption = "python-docs-dev",
    k: Annotated[int, typer.Option(help="Cut-off for recall@k and MRR.")] = 10,
    mode: Annotated[str, typer.Option(help="hybrid, vector or keyword.")] = "hybrid",
    min_recall: Annotated[float | None, typer.Option(help="Fail below this recall@k.")] = None,
    min_mrr: Annotated[float | None, typer.Option(help="Fail below this MRR.")] = None,
    min_ndcg: Annotated[float | None, typer.Option(help="Fail below this nDCG@10.")] = None,
    corpus_root: CorpusRootOption = None,
    out: OutOption = Path("eval-reports"),
) -> None:
    """recall@k, MRR and nDCG@10 against gold passages; refusals by the relevance floor."""
    from chatworks.evals.datasets import PYTHON_DOCS_DEV
    from chatworks.evals.report import check_thresholds
    from chatworks.evals.runner import run_retrieval_eval

    if mode not in ("hybrid", "vector", "keyword"):
        raise typer.BadParameter("--mode must be hybrid, vector or keyword")
    dataset = dataset or PYTHON_DOCS_DEV
    items, library = _eval_library(dataset, collection, corpus_root)
    report = _run_with_bar("retrieving", lambda progress: run_retrieval_eval(
        items, library, collection, k=k, mode=mode, dataset=str(dataset), progress=progress,
    ))  # fmt: skip
    failures = check_thresholds(
        report.metrics, {f"recall@{k}": min_recall, "mrr": min_mrr, "ndcg@10": min_ndcg}
    )
    _finish_eval(report, out, failures)


@eval_app.command("answers")
def eval_answers(
    dataset: DatasetOption = None,
    collection: EvalCollectionOption = "python-docs-dev",
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 64,
    min_refusal_accuracy: Annotated[
        float | None, typer.Option(help="Fail below this refusal accuracy (unanswerable).")
    ] = None,
    min_containment: Annotated[
        float | None, typer.Option(help="Fail below this gold-answer containment.")
    ] = None,
    min_citation_precision: Annotated[
        float | None, typer.Option(help="Fail below this citation precision.")
    ] = None,
    corpus_root: CorpusRootOption = None,
    out: OutOption = Path("eval-reports"),
) -> None:
    """Grounded answers with the configured provider: refusals, containment, citations.
    Any invalid citation (one naming a passage the model was not given) fails the run."""
    from chatworks.evals.datasets import PYTHON_DOCS_DEV
    from chatworks.evals.report import check_thresholds
    from chatworks.evals.runner import run_answer_eval
    from chatworks.providers.registry import create_provider

    dataset = dataset or PYTHON_DOCS_DEV
    items, library = _eval_library(dataset, collection, corpus_root)
    items = items[:limit] if limit else items
    provider = create_provider(library.settings)
    report = _run_with_bar("answering", lambda progress: run_answer_eval(
        items, library, provider, collection, model=library.settings.model,
        max_tokens=max_tokens, dataset=str(dataset), progress=progress,
    ))  # fmt: skip
    failures = check_thresholds(
        report.metrics,
        {"refusal_accuracy": min_refusal_accuracy, "containment": min_containment,
         "citation_precision": min_citation_precision},
        {"invalid_citations": 0},
    )  # fmt: skip
    _finish_eval(report, out, failures)


# --- training --------------------------------------------------------------------------------

train_app = typer.Typer(help="Train a chat model: tokenizer, data, base, sft, eval, or all (run).")
app.add_typer(train_app, name="train")

PresetOption = Annotated[str, typer.Option(help="micro, tiny, gpu-small or gpu-d20.")]
CorpusOption = Annotated[
    list[Path] | None,
    typer.Option("--corpus", help="Text files/dirs (.txt .md .rst .jsonl .parquet); "
                 "default: Debian python3.11-doc."),
]  # fmt: skip
ThreadsOption = Annotated[int | None, typer.Option(help="torch threads (default: all cores).")]
TrackOption = Annotated[bool, typer.Option(help="Log to MLflow (./mlruns).")]


def _log(message: str) -> None:
    console.print(message, markup=False, highlight=False)  # "[sft]" is text, not rich markup


def _preset(name: str, threads: int | None = None, **overrides):
    import torch

    from chatworks.training.presets import get_preset

    if threads:
        torch.set_num_threads(threads)
    return get_preset(name).override(**overrides)


@train_app.command("tokenizer")
def train_tokenizer(
    out: Annotated[Path, typer.Option(help="Directory for tokenizer.json and friends.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size.")] = None,
) -> None:
    """Train a byte-level BPE tokenizer with chat tokens; print its compression."""
    from chatworks.training.pipeline import tokenizer_stage

    p = _preset(preset, vocab_size=vocab_size)
    _, results = tokenizer_stage(p, corpus or _default_corpus(), out)
    for name, value in results.items():
        console.print(f"{name}: {value:.3f}")


@train_app.command("data")
def train_data(
    tokenizer: Annotated[Path, typer.Option(help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option(help="Directory for shards + manifest.json.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
) -> None:
    """Clean, dedupe, split and tokenize a corpus into shards (resumable)."""
    from chatworks.training.corpus import prepare_corpus
    from chatworks.training.tokenizer_train import load_tokenizer

    p = _preset(preset)
    m = prepare_corpus(corpus or _default_corpus(), load_tokenizer(tokenizer), out,
                       p.corpus_bytes, p.val_fraction)  # fmt: skip
    console.print(f"train {m.tokens('train'):,} tokens, val {m.tokens('val'):,} tokens -> {out}")


@train_app.command("base")
def train_base(
    data: Annotated[Path, typer.Option(help="Shards from `train data`.")],
    tokenizer: Annotated[Path, typer.Option(help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option(help="Stage directory (resumes from out/checkpoint).")],
    preset: PresetOption = "tiny",
    depth: Annotated[int | None, typer.Option(help="Layers; width etc. follow.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw or muon.")] = None,
    stop_after: Annotated[int | None, typer.Option(help="Stop (checkpointed) here.")] = None,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Pretrain; under `torchrun` every process trains its share of each batch (DDP)."""
    from chatworks.training.ddp import close_world, init_world
    from chatworks.training.pretrain import pretrain
    from chatworks.training.tracking import start_tracking

    p = _preset(preset, threads, depth=depth, steps=steps, optimizer=optimizer)
    world = init_world()
    tracker = start_tracking(track and world.is_main, out.name)
    log = _log if world.is_main else (lambda _: None)
    losses = pretrain(p, data, tokenizer, out, world, tracker, stop_after, log)
    tracker.close()
    close_world(world)
    if world.is_main and losses:
        console.print(f"final loss {losses[-1]:.4f}")


@train_app.command("sft")
def train_sft(
    out: Annotated[Path, typer.Option(help="Stage directory.")],
    base: Annotated[
        Path | None,
        typer.Option(
            help="Model to fine-tune: a run or checkpoint directory, a .gguf file or a "
            "Hugging Face directory; default: the bundled SmolLM2."
        ),
    ] = None,
    chats: Annotated[
        Path | None, typer.Option(help="JSONL of {messages: [...]}; default: ShareGPT.")
    ] = None,
    preset: PresetOption = "tiny",
    steps: Annotated[int | None, typer.Option(help="SFT steps.")] = None,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Chat fine-tuning with the loss on assistant tokens only."""
    from chatworks.model import bundled_model_path
    from chatworks.training.sft import load_conversations, sft
    from chatworks.training.tracking import start_tracking

    p = _preset(preset, threads, sft_steps=steps)
    conversations = load_conversations(chats, p.sft_conversations, 3 * p.seq_len)
    tracker = start_tracking(track, out.name)
    losses = sft(p, base or bundled_model_path(), conversations, out, tracker=tracker, log=_log)
    tracker.close()
    status = f"final loss {losses[-1]:.4f}" if losses else "already trained"
    console.print(f"{len(conversations)} conversations, {status}")


@train_app.command("eval")
def train_eval(
    run: Annotated[Path, typer.Argument(help="Run directory with base/ and sft/.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
) -> None:
    """Val bits per byte, cloze multiple choice, and sample chats."""
    from chatworks.training.pipeline import evaluate_stage

    results, chats = evaluate_stage(run, _preset(preset), corpus or _default_corpus())
    for name, value in results.items():
        console.print(f"{name}: {value:.4f}")
    for question, answer in chats:
        console.print(f"[bold]user:[/] {question}\n[bold]assistant:[/] {answer}", markup=True)


@train_app.command("run")
def train_run(
    out: Annotated[Path, typer.Option(help="Run directory, e.g. runs/NAME.")],
    preset: PresetOption = "tiny",
    corpus: CorpusOption = None,
    chats: Annotated[Path | None, typer.Option(help="SFT JSONL; default: ShareGPT.")] = None,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """The whole pipeline; re-running continues an interrupted run."""
    from chatworks.training.pipeline import run

    report = run(_preset(preset, threads), out, corpus, chats, track, _log)
    console.print(f"report: {report}\nserve it: chatworks serve --model {out}")


def _default_corpus() -> list[Path]:
    from chatworks.training.corpus import default_sources

    return default_sources()


@app.command("export")
def export_model(
    run: Annotated[
        Path, typer.Argument(help="Run, stage or checkpoint directory (or a .gguf / HF dir).")
    ],
    format: Annotated[str, typer.Option("--format", help="hf or gguf.")] = "gguf",
    out: Annotated[Path, typer.Option(help="Directory (hf) or .gguf file.")] = Path("model.gguf"),
) -> None:
    """Export a trained model for transformers/vLLM (hf) or llama.cpp/Ollama (gguf)."""
    from chatworks.training.export import export

    console.print(f"wrote {export(run, format, out)}")  # type: ignore[arg-type]


if __name__ == "__main__":
    app()

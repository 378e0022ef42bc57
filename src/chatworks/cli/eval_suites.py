"""`chatworks eval run|new|judge-agreement`: eval suites as a product (docs/evals.md,
"Eval suites")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatworks.cli.evals import OutOption
from chatworks.cli.shared import console, run_with_bar, settings_from_flags

URL_HELP = ("A running chatworks server (http://host:8000); the suite's collection must be "
            "there (or use --ingest). Default: in this process.")  # fmt: skip
SuitesOption = Annotated[
    Path | None, typer.Option("--suites", help="Suites file (TOML); default: the bundled one.")
]


def _load_suite(name: str, suites: Path | None):
    from chatworks.evals.datasets import DatasetError
    from chatworks.evals.suites import BUNDLED_SUITES, SuiteError, get_suite

    try:
        suite = get_suite(name, suites or BUNDLED_SUITES)
        return suite, suite.items()
    except (SuiteError, DatasetError, FileNotFoundError) as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None


def _settings_params(settings) -> dict[str, object]:
    """What changes the answers, recorded with the run (report and MLflow)."""
    names = ("provider", "model", "embedding_model", "chunk_tokens", "chunk_overlap_tokens",
             "rag_answer", "rag_top_k", "rag_candidates", "rag_min_similarity",
             "rag_keyword_weight", "rag_vector_weight", "rag_mmr_lambda", "rag_focus_windows",
             "rag_focus_neighbours", "engine_precision")  # fmt: skip
    return {n: getattr(settings, n) for n in names if hasattr(settings, n)}


def _print_outcome(outcome, suite) -> None:
    from rich.table import Table

    from chatworks.evals.report import compare, describe_bound

    report = outcome.report
    table = Table(title=f"eval suite {suite.name}: {len(report.questions)} questions")
    for column in ("metric", "value", "bound", "change"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, (_, value, delta) in compare(report.metrics, outcome.previous_metrics or {}).items():
        failed = any(f.startswith(f"{name} ") for f in outcome.failures)
        shown = "n/a" if value is None else f"{value:.3f}"
        table.add_row(name, f"[red]{shown}[/]" if failed else shown,
                      describe_bound(name, suite.minimums, suite.maximums),
                      "" if delta is None else f"{delta:+.3f}")  # fmt: skip
    console.print(table)
    console.print(f"reports: {outcome.files['html']} (.json, .md); answers: "
                  f"{outcome.files['answers']}", highlight=False)  # fmt: skip
    for name in outcome.skipped:
        console.print(f"not measured over HTTP, bound skipped: {name}", highlight=False)


def run(
    suite_name: Annotated[str, typer.Argument(metavar="SUITE", help="A suite name, e.g. gate.")],
    suites: SuitesOption = None,
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    api_key: Annotated[str | None, typer.Option(help="API key for --url.")] = None,
    ingest: Annotated[
        bool, typer.Option(help="With --url: upload the suite's corpus through the API first.")
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Questions in flight at once.")] = 4,
    resume: Annotated[
        bool, typer.Option(help="Skip the questions already in <out>/<suite>/answers.jsonl.")
    ] = False,
    judge: Annotated[
        bool, typer.Option(help="Also ask the configured provider to judge each answer.")
    ] = False,
    mlflow: Annotated[bool, typer.Option(help="Record an MLflow run (./mlruns).")] = True,
    mlflow_store: Annotated[Path, typer.Option(help="MLflow store folder.")] = Path("mlruns"),
    out: OutOption = Path("eval-reports"),
) -> None:
    """Run an eval suite in process or against a server: answers, citations, refusals,
    groundedness, latency and tokens (plus retrieval metrics in process), with a JSON,
    Markdown and HTML report compared with the previous run. Exits 1 below a threshold."""
    from chatworks.evals.client import ServerError
    from chatworks.evals.suite_run import run_suite, track_run

    suite, items = _load_suite(suite_name, suites)
    settings = settings_from_flags()
    try:
        if url:
            asker, library, judge_provider, params = _remote(suite, settings, url, api_key,
                                                             ingest, judge)  # fmt: skip
        else:
            asker, library, judge_provider, params = _in_process(suite, settings, judge)
        verdicts = None
        if judge_provider is not None:
            from chatworks.evals.judge import provider_judge

            verdicts = provider_judge(judge_provider, settings.model)
            params["judge_model"] = settings.model
        outcome = run_with_bar(f"{suite.name}: asking {len(items)}", lambda progress: run_suite(
            suite, asker, out, library=library, params=params, concurrency=concurrency,
            resume=resume, judge=verdicts, progress=progress,
        ))  # fmt: skip
    except (ServerError, FileNotFoundError) as e:  # a server, a corpus or a package missing
        console.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    _print_outcome(outcome, suite)
    if mlflow:
        run_id = track_run(outcome, mlflow_store)
        console.print(
            f"MLflow run {run_id} in {mlflow_store}" if run_id
            else "MLflow is not installed (pip install 'chatworks[train]'): no run recorded",
            highlight=False,
        )  # fmt: skip
    for failure in outcome.failures:
        console.print(f"[red]FAIL[/] {failure}", highlight=False)
    if outcome.failures:
        raise typer.Exit(1)


def _remote(suite, settings, url: str, api_key: str | None, ingest: bool, judge: bool):
    """(asker, no library, judge provider, params) for a run against a server."""
    from chatworks.evals.client import RemoteAsker, upload_corpus
    from chatworks.evals.datasets import corpus_files
    from chatworks.providers.registry import create_provider

    if ingest:
        files = corpus_files(suite.dataset, suite.corpus_root())
        with console.status(f"uploading {len(files)} files to {suite.collection}..."):
            upload_corpus(url, suite.collection, files, suite.corpus_root(), api_key)
    asker = RemoteAsker(url, suite.collection, suite.max_tokens, api_key)
    # The judge runs here, with this machine's configured provider, not the server's model.
    judge_provider = create_provider(settings) if judge else None
    return asker, None, judge_provider, {"mode": "http", "url": url}


def _in_process(suite, settings, judge: bool):
    """(asker, library, judge provider, params) for a run in this process; ingests first."""
    from chatworks.evals.ask import LocalAsker
    from chatworks.evals.suite_run import ingest_suite_corpus
    from chatworks.providers.registry import create_provider
    from chatworks.rag.library import Library

    library = Library(settings)
    with console.status("loading the embedding model and ingesting the corpus..."):
        result = ingest_suite_corpus(suite, library)
    console.print(f"{suite.collection}: {result.added + result.updated} ingested, "
                  f"{result.unchanged} unchanged, {result.failed} failed")  # fmt: skip
    provider = create_provider(settings)
    asker = LocalAsker(library, provider, suite.collection, settings.model, suite.max_tokens)
    params = {"mode": "in-process", **_settings_params(settings)}
    return asker, library, provider if judge else None, params


def new(
    name: Annotated[str, typer.Argument(help="Name of the new golden set.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write it.")] = Path("."),
) -> None:
    """Scaffold NAME.jsonl (an answerable and an unanswerable example) and NAME.sources.txt,
    and print the suite entry that runs them."""
    from chatworks.evals.scaffold import scaffold

    try:
        dataset, sources, snippet = scaffold(name, directory)
    except FileExistsError as e:
        console.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"wrote {dataset} and {sources}; add this to a suites file "
                  "(chatworks eval run NAME --suites FILE):\n", highlight=False)  # fmt: skip
    print(snippet)


def judge_agreement(
    labels: Annotated[
        Path | None, typer.Option(help="Human-labelled cases (JSONL); default: the bundled ones.")
    ] = None,
) -> None:
    """How often the configured provider, as a judge, agrees with the human labels: accuracy
    and Cohen's kappa."""
    from rich.table import Table

    from chatworks.evals.judge import JUDGE_LABELS, agreement, judge_answer, load_judge_cases
    from chatworks.evals.runner import ask_all
    from chatworks.providers.registry import create_provider

    cases = load_judge_cases(labels or JUDGE_LABELS)
    settings = settings_from_flags()
    provider = create_provider(settings)

    def ask(case):
        return judge_answer(provider, settings.model, case.question, case.gold_answer,
                            case.answer, case.quotes)  # fmt: skip

    replies = run_with_bar("judging", lambda progress: ask_all(provider, cases, ask, progress))
    result = agreement([c.correct for c in cases], [verdict for verdict, _ in replies])
    table = Table(title=f"judge {settings.provider}/{settings.model} on {result.cases} cases")
    table.add_column("case")
    table.add_column("human")
    table.add_column("judge")
    table.add_column("reply")
    for case, (verdict, text) in zip(cases, replies, strict=True):
        shown = "?" if verdict is None else ("yes" if verdict else "no")
        table.add_row(case.id, "yes" if case.correct else "no", shown, text.strip()[:40])
    console.print(table)
    console.print(f"accuracy {result.accuracy:.3f}, Cohen's kappa {result.kappa:.3f}, "
                  f"{result.unparsed} replies without a verdict (counted as no)")  # fmt: skip

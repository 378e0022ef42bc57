"""One suite run end to end: the questions through an asker, the retrieval metrics when the
library is in this process, the thresholds, the reports (JSON, Markdown, HTML, compared with
the previous run of the suite) and an MLflow run.

Files go to `<out>/<suite>/`: `answers.jsonl` (one record a question, appended as they finish;
what `--resume` continues) and `run-<suite>-<UTC time>.json|.md|.html|.latency.png`.
Not covered: building the asker (the CLI picks in-process or HTTP) or ingesting the corpus
(`ingest_suite_corpus`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chatworks.evals.ask import Asker
from chatworks.evals.datasets import corpus_files
from chatworks.evals.html import to_html
from chatworks.evals.plots import latency_histogram
from chatworks.evals.questions import Judge, run_questions, summarize
from chatworks.evals.report import check_thresholds, previous_report, report_stem, write_reports
from chatworks.evals.runner import EvalReport, Progress, run_retrieval_eval
from chatworks.evals.suites import Suite
from chatworks.rag.ingest import IngestResult, ingest_path
from chatworks.rag.library import Library

# Measured from the ranked hits, which only an in-process run sees (the HTTP answer carries
# the citations, not the ranking), and from the passages the model was given.
LOCAL_ONLY = frozenset({"recall@10", "mrr", "ndcg@10", "floor_refusal_accuracy",
                        "floor_false_refusal_rate", "invalid_citations"})  # fmt: skip


@dataclass
class SuiteOutcome:
    report: EvalReport
    failures: list[str]  # threshold messages, each starting with its metric's name
    skipped: list[str] = field(default_factory=list)  # bounds not checkable over HTTP
    files: dict[str, Path] = field(default_factory=dict)  # json, md, html, answers
    previous: Path | None = None  # the report compared with
    previous_metrics: dict[str, float | None] | None = None


def ingest_suite_corpus(suite: Suite, library: Library) -> IngestResult:
    """The dataset's corpus subset into the suite's collection (unchanged files are skipped)."""
    root = suite.corpus_root()
    # Named under the root (`tutorial/datastructures.rst.txt`), as the gold passages are.
    files = corpus_files(suite.dataset, root)
    return ingest_path(library.context, files, suite.collection, root=root)


def suite_thresholds(
    suite: Suite, metrics: Mapping[str, float | None], remote: bool
) -> tuple[list[str], list[str]]:
    """(failures, bounds skipped because the metric is not measured over HTTP)."""
    skipped = sorted(n for n in {*suite.minimums, *suite.maximums} if remote and n in LOCAL_ONLY)
    keep = {n: b for n, b in suite.minimums.items() if n not in skipped}
    failures = check_thresholds(
        metrics, keep, {n: b for n, b in suite.maximums.items() if n not in skipped}
    )
    return failures, skipped


def run_suite(
    suite: Suite,
    asker: Asker,
    out: Path,
    *,
    library: Library | None = None,
    params: Mapping[str, object] | None = None,
    concurrency: int = 4,
    resume: bool = False,
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> SuiteOutcome:
    """Runs the suite and writes its reports. `library` (in-process runs) adds the retrieval
    metrics; `params` are recorded in the report (provider, model, settings)."""
    items = suite.items()
    run_dir = out / suite.name
    answers = run_dir / "answers.jsonl"
    records = run_questions(items, asker, answers, concurrency=concurrency, resume=resume,
                            judge=judge, progress=progress)  # fmt: skip
    metrics: dict[str, float | None] = {}
    if library is not None:
        retrieval = run_retrieval_eval(items, library, suite.collection, k=10)
        metrics.update(retrieval.metrics)
    metrics.update(summarize(records))
    report = EvalReport(
        "run", str(suite.dataset), suite.collection,
        {"suite": suite.name, "questions": len(items), "max_tokens": suite.max_tokens,
         **(params or {})}, metrics, list(records),
    )  # fmt: skip
    failures, skipped = suite_thresholds(suite, metrics, remote=library is None)
    prefix = f"run-{suite.name}"
    before = previous_report(run_dir, prefix)
    previous = json.loads(before.read_text())["metrics"] if before else None
    stem = report_stem(prefix, run_dir)
    json_path, md_path = write_reports(report, run_dir, stem, previous)
    latencies = [r.latency_s for r in records if r.error is None]
    plot = latency_histogram(latencies, run_dir / f"{stem}.latency.png", f"suite {suite.name}")
    html_path = run_dir / f"{stem}.html"
    html_path.write_text(to_html(
        report, suite=suite.name, failures=failures, minimums=suite.minimums,
        maximums=suite.maximums, previous=previous, previous_name=before.name if before else "",
        plot=plot.read_bytes() if plot else None,
    ), encoding="utf-8")  # fmt: skip
    files = {"json": json_path, "md": md_path, "html": html_path, "answers": answers}
    if plot:
        files["latency_plot"] = plot
    return SuiteOutcome(report, failures, skipped, files, before, previous)


def track_run(outcome: SuiteOutcome, store: Path) -> str | None:
    """One MLflow run for the eval: params, metrics, the reports as artifacts. Returns the run
    id, or None when MLflow is not installed (it comes with the train/dev extras)."""
    from chatworks.training.tracking import MlflowTracker  # imports mlflow only when built

    report = outcome.report
    try:
        tracker = MlflowTracker(store, "chatworks-evals", f"eval-{report.params['suite']}")
    except ImportError:
        return None
    tracker.log_params({**report.params, "dataset": report.dataset,
                        "collection": report.collection})  # fmt: skip
    # MLflow keys allow letters, digits and _-. /: "recall@10" is logged as "recall_at_10".
    logged = {k.replace("@", "_at_"): v for k, v in report.metrics.items() if v is not None}
    tracker.log_metrics(logged, step=0)
    tracker.log_metrics({"thresholds_failed": float(len(outcome.failures))}, step=0)
    for path in outcome.files.values():
        tracker.log_artifact(path)
    tracker.close()
    return tracker.run_id

"""Eval reports: a JSON file (everything, per question) and a Markdown file (the summary and the
questions that went wrong), plus the threshold check that makes an eval a CI gate.

Not covered: computing anything (`runner.py`, `metrics.py`) or printing to a terminal (the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from chatworks.evals.probes import ProbeResult
from chatworks.evals.runner import AnswerResult, EvalReport, RetrievalResult


def check_thresholds(
    values: Mapping[str, float | None],
    minimums: Mapping[str, float | None],
    maximums: Mapping[str, float | None] | None = None,
) -> list[str]:
    """One message per metric outside its bound (bounds of None are not checked). A metric
    that could not be computed (None) fails its bound: a gate must not pass on no data."""
    failures = []
    for bounds, below in ((minimums, True), ((maximums or {}), False)):
        for name, bound in bounds.items():
            if bound is None:
                continue
            value = values.get(name)
            if value is None:
                failures.append(f"{name} could not be computed (bound {bound})")
            elif (value < bound) if below else (value > bound):
                word = "below the minimum" if below else "above the maximum"
                failures.append(f"{name} = {value:.3f} is {word} {bound}")
    return failures


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def to_markdown(report: EvalReport) -> str:
    params = ", ".join(f"{k}={v}" for k, v in report.params.items())
    lines = [
        f"# {report.kind} eval: {report.collection}",
        "",
        f"Dataset `{report.dataset}`; {params}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_fmt(value)} |" for name, value in report.metrics.items()),
        "",
    ]
    misses = [q for q in report.questions if _missed(q)]
    if misses:
        lines += ["## Questions that went wrong", ""]
        for q in misses:
            lines.append(f"- `{q.id}`: {_why(q)}")
    return "\n".join(lines) + "\n"


def _missed(q: object) -> bool:
    if isinstance(q, ProbeResult):
        return not q.passed
    if isinstance(q, RetrievalResult):
        return not q.refused if not q.answerable else (q.recall or 0.0) < 1.0 or q.refused
    assert isinstance(q, AnswerResult)
    if not q.answerable:
        return not q.refused
    return q.refused or not q.contains_answer or q.invalid_citations > 0


def _why(q: object) -> str:
    if isinstance(q, ProbeResult):
        return f"{'; '.join(q.failures)}: {q.answer.replace(chr(10), ' ')[:160]!r}"
    if isinstance(q, RetrievalResult):
        if not q.answerable:
            return f"unanswerable, but above the relevance floor ({_fmt(q.best_similarity)})"
        if q.refused:
            return f"refused by the relevance floor (best similarity {_fmt(q.best_similarity)})"
        # The last two path components name a document well enough to read.
        found = dict.fromkeys("/".join(Path(s).parts[-2:]) for s in q.sources)
        return f"recall {_fmt(q.recall)}; retrieved from {', '.join(found)}"
    assert isinstance(q, AnswerResult)
    answer = q.answer.replace("\n", " ")[:160]
    if not q.answerable:
        return f"unanswerable, but answered: {answer!r}"
    if q.invalid_citations:
        return f"{q.invalid_citations} invalid citation(s)"
    return "refused" if q.refused else f"gold answer not in {answer!r}"


def write_reports(report: EvalReport, out_dir: Path) -> tuple[Path, Path]:
    """Writes `<kind>-<UTC time>.json` and `.md` into `out_dir`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report.kind}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report), encoding="utf-8")
    return json_path, md_path

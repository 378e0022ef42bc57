"""Eval reports: a JSON file (everything, per question) and a Markdown file (the summary and the
questions that went wrong), the comparison of a suite run with the previous one, plus the
threshold check that makes an eval a CI gate.

Not covered: computing anything (`runner.py`, `metrics.py`), the HTML page (`html.py`) or
printing to a terminal (the CLI).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from itertools import chain, count
from pathlib import Path

from chatworks.evals.probes import ProbeResult
from chatworks.evals.questions import QuestionRecord
from chatworks.evals.runner import AnswerResult, EvalReport, RetrievalResult

Delta = tuple[float | None, float | None, float | None]  # (previous, now, now - previous)


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


def describe_bound(name: str, minimums: Mapping[str, float], maximums: Mapping[str, float]) -> str:
    """A metric's bounds as text: ">= 0.85", "<= 0", both, or "" when it has none."""
    parts = [f">= {minimums[name]:g}"] if name in minimums else []
    parts += [f"<= {maximums[name]:g}"] if name in maximums else []
    return " and ".join(parts)


def compare(
    now: Mapping[str, float | None], previous: Mapping[str, float | None]
) -> dict[str, Delta]:
    """Per metric of the current run: the previous value, the current one and the change
    (None where either is undefined)."""
    out: dict[str, Delta] = {}
    for name, value in now.items():
        before = previous.get(name)
        delta = None if value is None or before is None else value - before
        out[name] = (before, value, delta)
    return out


def previous_report(out_dir: Path, prefix: str) -> Path | None:
    """The newest `<prefix>-*.json` report in `out_dir` (by time written), if any: called
    before a run writes its own, it is the run before."""
    return max(out_dir.glob(f"{prefix}-*.json"), key=lambda p: p.stat().st_mtime_ns, default=None)


def to_markdown(report: EvalReport, previous: Mapping[str, float | None] | None = None) -> str:
    params = ", ".join(f"{k}={v}" for k, v in report.params.items())
    lines = [
        f"# eval suite {report.params.get('suite')}: {report.collection}"
        if report.kind == "run"
        else f"# {report.kind} eval: {report.collection}",
        "",
        f"Dataset `{report.dataset}`; {params}.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {name} | {_fmt(value)} |" for name, value in report.metrics.items()),
        "",
    ]
    if previous is not None:
        lines += ["## Compared with the previous run", "", "| metric | previous | now | change |",
                  "|---|---|---|---|"]  # fmt: skip
        for name, (before, now, delta) in compare(report.metrics, previous).items():
            change = "n/a" if delta is None else f"{delta:+.3f}"
            lines.append(f"| {name} | {_fmt(before)} | {_fmt(now)} | {change} |")
        lines.append("")
    misses = [q for q in report.questions if _missed(q)]
    if misses:
        lines += ["## Questions that went wrong", ""]
        for q in misses:
            lines.append(f"- `{q.id}`: {_why(q)}")
    return "\n".join(lines) + "\n"


def _missed(q: object) -> bool:
    if isinstance(q, QuestionRecord):
        return bool(q.failures)
    if isinstance(q, ProbeResult):
        return not q.passed
    if isinstance(q, RetrievalResult):
        return not q.refused if not q.answerable else (q.recall or 0.0) < 1.0 or q.refused
    assert isinstance(q, AnswerResult)
    if not q.answerable:
        return not q.refused
    return q.refused or not q.contains_answer or q.invalid_citations > 0


def _why(q: object) -> str:
    if isinstance(q, QuestionRecord):
        return f"{'; '.join(q.failures)}: {q.answer.replace(chr(10), ' ')[:160]!r}"
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


def report_stem(prefix: str, out_dir: Path) -> str:
    """`<prefix>-<UTC time>`, or with `-2`, `-3`... when a run in the same second already wrote
    its files to `out_dir` (a resumed run can finish within the second of the one before)."""
    stem = f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    taken = {path.name.split(".")[0] for path in out_dir.glob(f"{stem}*")}
    candidates = chain([stem], (f"{stem}-{n}" for n in count(2)))
    return next(name for name in candidates if name not in taken)


def write_reports(
    report: EvalReport, out_dir: Path, stem: str | None = None,
    previous: Mapping[str, float | None] | None = None,
) -> tuple[Path, Path]:  # fmt: skip
    """Writes `<stem>.json` and `.md` into `out_dir` (default stem `<kind>-<UTC time>`);
    returns both paths. With `previous` metrics, the Markdown compares the two runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or report_stem(report.kind, out_dir)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(report, previous), encoding="utf-8")
    return json_path, md_path

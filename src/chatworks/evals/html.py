"""The static HTML report of a suite run: one self-contained page (inline CSS, no script, no
remote asset) with the metrics against their bounds, the change since the previous run, and
the top failures with the question, the answer, its citations and quotes, the passages the
model was given (in process), the gold and why it failed. Every text from a dataset, a model
or a server is escaped. Not covered: the JSON and Markdown reports (`report.py`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape

from chatworks.evals.ask import Cited
from chatworks.evals.questions import QuestionRecord
from chatworks.evals.report import compare, describe_bound
from chatworks.evals.runner import EvalReport

TOP_FAILURES = 20
# Where a rise is bad news: the change column colours these the other way round.
LOWER_IS_BETTER = frozenset({"false_refusal_rate", "floor_false_refusal_rate", "latency_p50_s",
                             "latency_p95_s", "prompt_tokens_mean", "completion_tokens_mean",
                             "errors", "invalid_citations"})  # fmt: skip

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #136c2e; } .fail { color: #b3261e; font-weight: 600; }
.better { color: #136c2e; } .worse { color: #b3261e; }
.failure { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; margin: 1rem 0; }
.why { color: #b3261e; } .meta { color: #666; font-size: .9em; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .5rem; border-radius: 4px;
      margin: .3rem 0; }
blockquote { margin: .3rem 0 .3rem 1rem; padding-left: .6rem; border-left: 3px solid #ccc;
             white-space: pre-wrap; }
"""


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _metrics_table(
    report: EvalReport, previous: Mapping[str, float | None] | None,
    minimums: Mapping[str, float], maximums: Mapping[str, float], failed: set[str],
) -> list[str]:  # fmt: skip
    head = "<tr><th>metric</th><th>value</th><th>bound</th>"
    head += "<th>previous</th><th>change</th></tr>" if previous is not None else "</tr>"
    rows = ["<table>", head]
    for name, (before, now, delta) in compare(report.metrics, previous or {}).items():
        bound = escape(describe_bound(name, minimums, maximums))
        state = ("fail" if name in failed else "pass") if bound else ""
        row = (f"<tr><td>{escape(name)}</td><td class='num {state}'>{_num(now)}</td>"
               f"<td>{bound}</td>")  # fmt: skip
        if previous is not None:
            better = delta and (delta < 0 if name in LOWER_IS_BETTER else delta > 0)
            trend = "" if not delta else ("better" if better else "worse")
            row += (f"<td class='num'>{_num(before)}</td>"
                    f"<td class='num {trend}'>{_num(delta, signed=True)}</td>")  # fmt: skip
        rows.append(row + "</tr>")
    return [*rows, "</table>"]


def _quotes(items: Sequence[Cited]) -> str:
    """Numbered sources with their quoted text."""
    return "".join(
        f"<div class='meta'>[{n}] {escape(c.source)}</div>"
        f"<blockquote>{escape(c.quote)}</blockquote>"
        for n, c in enumerate(items, 1)
    )


def _failure(r: QuestionRecord) -> str:
    gold = (f"<b>gold answer</b>: {escape(r.gold_answer)}" if r.gold_answer is not None
            else "<b>gold</b>: the documents do not answer this")  # fmt: skip
    passages = "".join(
        f"<div class='meta'>gold passage in {escape(g['source'])}</div>"
        f"<blockquote>{escape(g['snippet'])}</blockquote>"
        for g in r.gold
    )
    cited = _quotes(r.citations) or "<div class='meta'>no citations</div>"
    # Collapsed (a plain <details>, no script): five windows would bury the answer.
    given = (f"<details><summary>the {len(r.passages)} passages given to the model</summary>"
             f"{_quotes(r.passages)}</details>" if r.passages else "")  # fmt: skip
    why = "".join(f"<li>{escape(f)}</li>" for f in r.failures)
    refused = " (refused)" if r.refused else ""
    return (
        f"<div class='failure'><h3>{escape(r.id)}: {escape(r.question)}</h3>"
        f"<ul class='why'>{why}</ul><div>{gold}</div>{passages}"
        f"<div><b>answer</b>{refused}</div><pre>{escape(r.answer) or '(empty)'}</pre>"
        f"<div><b>citations</b></div>{cited}{given}"
        f"<div class='meta'>latency {r.latency_s:.2f} s, tokens {r.prompt_tokens} + "
        f"{r.completion_tokens}</div></div>"
    )


def to_html(
    report: EvalReport,
    *,
    suite: str,
    failures: Sequence[str],
    minimums: Mapping[str, float],
    maximums: Mapping[str, float],
    previous: Mapping[str, float | None] | None = None,
    previous_name: str = "",
    plot: bytes | None = None,
) -> str:
    """The page. `failures` are the threshold messages (each names its metric), shown at the
    top; `previous` the metrics of the run before, for the change column; `plot` a PNG (the
    latency histogram), inlined as a data URI so the page stays one file."""
    failed = {name for name in report.metrics if any(f.startswith(f"{name} ") for f in failures)}
    params = ", ".join(f"{escape(str(k))}={escape(str(v))}" for k, v in report.params.items())
    verdict = (
        f"<p class='fail'>FAILED: {len(failures)} bound(s) not met</p><ul class='fail'>"
        + "".join(f"<li>{escape(f)}</li>" for f in failures) + "</ul>"
        if failures else "<p class='pass'>All thresholds met.</p>"
    )  # fmt: skip
    records = [q for q in report.questions if isinstance(q, QuestionRecord)]
    missed = sorted((r for r in records if r.failures), key=lambda r: -len(r.failures))
    compared = (
        f"<p class='meta'>Compared with {escape(previous_name)}.</p>" if previous is not None
        else "<p class='meta'>No previous run of this suite to compare with.</p>"
    )  # fmt: skip
    body = [
        f"<h1>Eval suite {escape(suite)}: {len(records)} questions</h1>",
        f"<p class='meta'>dataset {escape(report.dataset)}; collection "
        f"{escape(report.collection)}; {params}</p>",
        verdict,
        "<h2>Metrics</h2>",
        compared,
        *_metrics_table(report, previous, minimums, maximums, failed),
        *(
            [
                "<h2>Latency</h2>",
                f"<img alt='latency histogram' src='data:image/png;base64,"
                f"{base64.b64encode(plot).decode()}'>",
            ]
            if plot
            else []
        ),
        f"<h2>Top failures ({min(len(missed), TOP_FAILURES)} of {len(missed)})</h2>",
        *(_failure(r) for r in missed[:TOP_FAILURES]),
    ]
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>eval {escape(suite)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )  # fmt: skip

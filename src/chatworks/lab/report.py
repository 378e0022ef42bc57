"""The run report, in Markdown and HTML with the plots inlined: the leaderboard, then for the
best method (on its out-of-fold predictions, so every row is judged by a model that did not
see it) the confusion matrix, a calibration plot, per-class precision and recall, and the 20
worst errors grouped by failure type.

Failure types, from the probabilities alone so they apply to any method:
- `confidently wrong`: the wrong class got >= 0.8. Often a label error or a genuinely
  ambiguous record: read these first.
- `near tie`: the true class came second within 0.15 of the winner: a boundary case that a
  better model or more data may fix.
- `true class far down`: the true class was not even second.
- `unsure`: the rest (the winner had < 0.8 and no close second was the true class).
Not covered: explanations of single predictions (feature attributions).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from chatworks.lab.compare import Comparison, Result

WORST = 20
CONFIDENT, TIE_MARGIN = 0.8, 0.15


@dataclass
class Error:
    row: int
    true: str
    predicted: str
    p_predicted: float
    p_true: float
    kind: str
    text: str


def failure_kind(proba: np.ndarray, true: int) -> str:
    order = np.argsort(-proba)
    top = order[0]
    if proba[top] >= CONFIDENT:
        return "confidently wrong"
    if order[1] == true and proba[top] - proba[true] < TIE_MARGIN:
        return "near tie"
    if order[1] != true:
        return "true class far down"
    return "unsure"


def covered(result: Result) -> np.ndarray:
    """Rows whose fold the method finished (all rows unless the budget cut it short)."""
    return result.oof.sum(1) > 0


def worst_errors(comparison: Comparison, result: Result, n: int = WORST) -> list[Error]:
    data, oof = comparison.data, result.oof
    rows = np.flatnonzero(covered(result) & (oof.argmax(1) != data.y))
    # Worst first: the least probability left on the true class.
    rows = rows[np.argsort(oof[rows, data.y[rows]])][:n]
    errors = []
    for row in rows:
        true, predicted = int(data.y[row]), int(oof[row].argmax())
        if data.columns.text:
            text = data.texts(np.array([row]))[0]
        else:
            text = ", ".join(f"{k}={v}" for k, v in data.frame.iloc[row].items())
        errors.append(Error(
            int(row), data.labels[true], data.labels[predicted], float(oof[row, predicted]),
            float(oof[row, true]), failure_kind(oof[row], true), " ".join(text.split())[:300],
        ))  # fmt: skip
    return errors


def _plots(comparison: Comparison, result: Result, folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    data, mask = comparison.data, covered(result)
    y, proba = data.y[mask], result.oof[mask]
    predicted = proba.argmax(1)
    labels = data.labels
    paths = {}

    matrix = confusion_matrix(y, predicted, labels=range(len(labels)))
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.method.name}: confusion matrix (out of fold)")
    fig.tight_layout()
    paths["confusion"] = folder / "confusion.png"
    fig.savefig(paths["confusion"], dpi=100)
    plt.close(fig)

    # Reliability: the top class's probability in 10 bins against how often it was right.
    confidence = proba.max(1)
    correct = predicted == y
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(confidence, edges) - 1, 0, 9)
    centers, accuracy, counts = [], [], []
    for b in range(10):
        inside = which == b
        if inside.any():
            centers.append(confidence[inside].mean())
            accuracy.append(correct[inside].mean())
            counts.append(int(inside.sum()))
    ece = sum(c * abs(a - m) for c, a, m in zip(counts, accuracy, centers, strict=True)) / len(y)
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#888", label="perfectly calibrated")
    ax.plot(centers, accuracy, marker="o", color="#5b7db1", label=result.method.name)
    ax.set_ylabel("accuracy")
    ax.set_title(f"calibration (expected calibration error {ece:.3f})")
    ax.legend(loc="upper left")
    bars.bar(centers, counts, width=0.08, color="#5b7db1")
    bars.set_yscale("log")
    bars.set_xlabel("top-class probability")
    bars.set_ylabel("records")
    fig.tight_layout()
    paths["calibration"] = folder / "calibration.png"
    fig.savefig(paths["calibration"], dpi=100)
    plt.close(fig)
    return paths


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def leaderboard_rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    ranked = comparison.ranked()
    for r in ranked + [r for r in comparison.results if not r.done]:
        if not r.done:
            rows.append([r.method.name, r.method.title, "-", "-", "-", "-", "-", r.note])
            continue
        rows.append([
            r.method.name, r.method.title,
            f"{_pct(r.mean('accuracy'))} ± {_pct(r.std('accuracy'))}",
            f"{_pct(r.mean('macro_f1'))} ± {_pct(r.std('macro_f1'))}",
            f"{r.mean('train_s'):.1f}", f"{r.p50_ms:.2f}", f"{r.size_bytes / 1e6:.2f}", r.note,
        ])  # fmt: skip
    return rows


LEADERBOARD_HEAD = ["method", "what", "accuracy", "macro-F1", "train s/fold", "p50 ms (1 record)",
                    "size MB", "note"]  # fmt: skip


def _per_class(comparison: Comparison, result: Result) -> list[list[str]]:
    mask = covered(result)
    y, predicted = comparison.data.y[mask], result.oof[mask].argmax(1)
    labels = comparison.data.labels
    p, r, f, n = precision_recall_fscore_support(y, predicted, labels=range(len(labels)),
                                                 zero_division=0)  # fmt: skip
    return [[labels[i], f"{p[i]:.3f}", f"{r[i]:.3f}", f"{f[i]:.3f}", str(n[i])]
            for i in range(len(labels))]  # fmt: skip


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out) + "</table>"


def write(comparison: Comparison, folder: Path, title: str, command: str) -> dict[str, Path]:
    """Writes report.md, report.html and the plots into `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    best = comparison.best
    data = comparison.data
    plots = _plots(comparison, best, folder)
    errors = worst_errors(comparison, best)
    kinds = sorted({e.kind for e in errors}, key=lambda k: -sum(e.kind == k for e in errors))
    facts = [
        f"data: `{data.source}`, {len(data)} rows, target `{data.target}` "
        f"({len(data.labels)} classes: {', '.join(data.labels)})",
        f"columns: text {data.columns.text}, categorical {data.columns.categorical}, "
        f"numeric {data.columns.numeric}, dropped {data.columns.dropped}",
        f"{len(comparison.folds)}-fold stratified cross-validation, seed {comparison.seed}; "
        f"every method on the same folds",
        f"command: `{command}`",
    ]
    head_errors = ["row", "true", "predicted", "p(predicted)", "p(true)", "record"]

    def error_rows(kind: str) -> list[list[str]]:
        return [[str(e.row), e.true, e.predicted, f"{e.p_predicted:.2f}", f"{e.p_true:.2f}",
                 e.text] for e in errors if e.kind == kind]  # fmt: skip

    md = [f"# {title}", "", *[f"- {f}" for f in facts], "", "## Leaderboard", "",
          _md_table(LEADERBOARD_HEAD, leaderboard_rows(comparison)), "",
          f"## Best: {best.method.name} ({best.method.title})", "",
          "![confusion matrix](confusion.png)", "", "![calibration](calibration.png)", "",
          "### Per class", "",
          _md_table(["class", "precision", "recall", "F1", "rows"], _per_class(comparison, best)),
          "", f"### The {len(errors)} worst errors, by failure type", ""]  # fmt: skip
    for kind in kinds:
        md += [f"#### {kind} ({sum(e.kind == kind for e in errors)})", "",
               _md_table(head_errors, error_rows(kind)), ""]  # fmt: skip
    paths = {"md": folder / "report.md", "html": folder / "report.html", **plots}
    paths["md"].write_text("\n".join(md) + "\n", encoding="utf-8")

    def img(path: Path, alt: str) -> str:
        encoded = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{alt}" src="data:image/png;base64,{encoded}">'

    body = [f"<h1>{html.escape(title)}</h1><ul>"
            + "".join(f"<li>{html.escape(f.replace('`', ''))}</li>" for f in facts) + "</ul>",
            "<h2>Leaderboard</h2>", _html_table(LEADERBOARD_HEAD, leaderboard_rows(comparison)),
            f"<h2>Best: {html.escape(best.method.name)} ({html.escape(best.method.title)})</h2>",
            img(plots["confusion"], "confusion matrix"), img(plots["calibration"], "calibration"),
            "<h3>Per class</h3>",
            _html_table(["class", "precision", "recall", "F1", "rows"],
                        _per_class(comparison, best)),
            f"<h3>The {len(errors)} worst errors, by failure type</h3>"]  # fmt: skip
    for kind in kinds:
        body += [f"<h4>{html.escape(kind)} ({sum(e.kind == kind for e in errors)})</h4>",
                 _html_table(head_errors, error_rows(kind))]  # fmt: skip
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:4px 8px;font-size:14px;vertical-align:top}th{background:#f3f3f3}"
             "img{max-width:48%;margin:4px}")  # fmt: skip
    paths["html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n",
        encoding="utf-8",
    )
    return paths

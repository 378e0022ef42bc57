"""Plots next to an eval's reports, as PNGs: the latency histogram of a suite run, and the
refusal trade-off of `chatworks eval calibrate` (matplotlib, from the train/dev extras; without
it there is no plot and the run goes on). Not covered: the numbers (`questions.summarize` has
the percentiles, `calibrate.tradeoff` the refusal rates)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def pyplot():
    """matplotlib's pyplot drawing to files only, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def latency_histogram(latencies: Sequence[float], path: Path, title: str) -> Path | None:
    """Writes the histogram with the p50 and p95 marked; None without matplotlib or data."""
    plt = pyplot() if latencies else None
    if plt is None:
        return None
    from chatworks.evals.metrics import percentile

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 3)), color="#5b7db1")
    for q, style in ((50, "-"), (95, "--")):
        value = percentile(latencies, q)
        ax.axvline(value, color="#b3261e", linestyle=style, label=f"p{q} {value:.2f} s")
    ax.set_xlabel("seconds per question")
    ax.set_ylabel("questions")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


Point = tuple[float, float, float]  # threshold, false refusals, unanswerable refused


def refusal_tradeoff(
    curves: Mapping[str, Sequence[Point]], chosen: float, path: Path, title: str
) -> Path | None:
    """Answerable questions refused against unanswerable ones refused, one line per set of
    questions (points are (threshold, false refusals, unanswerable refused)), the point at the
    `chosen` threshold circled and the goal (<= 0.2 at >= 0.5) dashed. None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, points in curves.items():
        line = ax.plot([p[2] for p in points], [p[1] for p in points], marker=".", label=name)[0]
        at = min(points, key=lambda p: abs(p[0] - chosen), default=None)
        if at is not None:
            ax.plot(at[2], at[1], "o", ms=10, mfc="none", color=line.get_color())
    ax.axhline(0.2, color="#999", lw=0.8, ls="--")
    ax.axvline(0.5, color="#999", lw=0.8, ls="--")
    ax.set_xlabel("unanswerable questions refused")
    ax.set_ylabel("answerable questions refused")
    ax.set_title(f"{title} (circled: threshold {chosen})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""The latency histogram of a suite run, a PNG next to its reports (matplotlib, from the
train/dev extras; without it there is no plot and the run goes on). Not covered: the numbers
(`questions.summarize` has the percentiles)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def latency_histogram(latencies: Sequence[float], path: Path, title: str) -> Path | None:
    """Writes the histogram with the p50 and p95 marked; None without matplotlib or data."""
    if not latencies:
        return None
    try:
        import matplotlib
    except ImportError:
        return None
    from chatworks.evals.metrics import percentile

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

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

"""What a load run measured: rates, latency percentiles, goodput under an SLO, errors by
status; written as JSON (every request too), Markdown and, for a sweep, a plot.

The measures, as vLLM's `bench serve` and GuideLLM name them: TTFT (request sent to first
content chunk; a whole response's latency when not streamed), TPOT (time per output token after
the first), ITL (the gaps between streamed chunks), end-to-end latency; each as p50/p90/p99 over
the successful requests. Goodput counts the requests per second that succeeded *and* met every
SLO given. Not covered: running the load (`runner.py`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chatworks.evals.metrics import percentile
from chatworks.evals.plots import pyplot
from chatworks.loadtest.client import Result
from chatworks.loadtest.runner import Run

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class SLO:
    """Limits in milliseconds; None leaves a measure unconstrained."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def met(self, r: Result) -> bool:
        checks = ((self.ttft_ms, r.ttft), (self.tpot_ms, r.tpot), (self.e2e_ms, r.latency))
        return r.ok and all(
            limit is None or (value is not None and value * 1000 <= limit)
            for limit, value in checks
        )


def summarize(run: Run, slo: SLO) -> dict[str, Any]:
    ok = run.succeeded
    errors = Counter(r.outcome for r in run.results if not r.ok)
    met = sum(map(slo.met, ok))
    seconds = run.elapsed or float("inf")
    return {
        "load": run.load.label,
        "requests": len(run.results),
        "succeeded": len(ok),
        "errors": dict(errors),
        "late_starts": run.late,
        "seconds": round(run.elapsed, 3),
        "requests_per_s": run.request_rate,
        "output_tokens_per_s": sum(r.output_tokens for r in ok) / seconds,
        "ttft_ms": _spread([r.ttft for r in ok]),
        "tpot_ms": _spread([r.tpot for r in ok]),
        "itl_ms": _spread([gap for r in ok for gap in r.gaps]),
        "e2e_ms": _spread([r.latency for r in ok]),
        "goodput": {"slo": asdict(slo), "requests_per_s": met / seconds,
                    "share": met / len(run.results) if run.results else 0.0},
    }  # fmt: skip


def _spread(seconds: list[float | None]) -> dict[str, float | None]:
    values = [s * 1000 for s in seconds if s is not None]
    return {f"p{q}": percentile(values, q) for q in PERCENTILES} | {
        "mean": sum(values) / len(values) if values else None
    }


def one_line(s: dict[str, Any]) -> str:
    return (
        f"{s['load']}: {s['succeeded']}/{s['requests']} ok, {s['requests_per_s']:.2f} req/s, "
        f"TTFT p50 {_ms(s['ttft_ms']['p50'])} ms, e2e p99 {_ms(s['e2e_ms']['p99'])} ms"
    )


def markdown(summaries: list[dict[str, Any]], title: str) -> str:
    head = ("| load | ok / sent | req/s | out tok/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms "
            "| ITL p99 ms | e2e p50 / p99 ms | goodput req/s | errors |")  # fmt: skip
    lines = [f"## {title}", "", head, "|" + "---|" * 10]
    for s in summaries:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors"].items())) or "none"
        lines.append(
            f"| {s['load']} | {s['succeeded']} / {s['requests']} | {s['requests_per_s']:.2f} "
            f"| {s['output_tokens_per_s']:.1f} | {_pair(s['ttft_ms'])} | {_pair(s['tpot_ms'])} "
            f"| {_ms(s['itl_ms']['p99'])} | {_pair(s['e2e_ms'])} "
            f"| {s['goodput']['requests_per_s']:.2f} | {errors} |"
        )
    return "\n".join(lines) + "\n"


def _pair(spread: dict[str, float | None]) -> str:
    return f"{_ms(spread['p50'])} / {_ms(spread['p99'])}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def write(runs: list[Run], summaries: list[dict[str, Any]], out: Path, title: str,
          setup: dict[str, Any]) -> list[Path]:  # fmt: skip
    """`load.json` (setup, summaries, every request), `load.md`, and `load.png` for a sweep."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"setup": setup, "summaries": summaries,
              "requests": [[asdict(r) for r in run.results] for run in runs]}  # fmt: skip
    written = [out / "load.json", out / "load.md"]
    written[0].write_text(json.dumps(record, indent=1))
    written[1].write_text(markdown(summaries, title))
    if len(summaries) > 2 and (plot := _plot(summaries, out / "load.png", title)):
        written.append(plot)
    return written


def _plot(summaries: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Latency percentiles against the request rate the server achieved, one point per run."""
    plt = pyplot()
    if plt is None:
        return None
    points = sorted(summaries, key=lambda s: s["requests_per_s"])
    rates = [s["requests_per_s"] for s in points]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, measure in zip(axes, ("ttft_ms", "e2e_ms"), strict=True):
        for q in ("p50", "p99"):
            axis.plot(rates, [s[measure][q] for s in points], marker="o", label=q)
        axis.set(xlabel="requests/s achieved", ylabel=measure.replace("_", " "), yscale="log")
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

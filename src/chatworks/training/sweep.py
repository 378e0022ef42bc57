"""A scaling sweep: models of several depths trained on the same number of tokens.

One tokenizer and one set of token shards for all (`sweep_dir/tokenizer`, `sweep_dir/data`),
then `pretrain` at each depth (`sweep_dir/dN`, resumable: a finished depth is not trained
again) with the preset's batch and the same token budget. Validation bits per byte are read
from each run's evaluations, so every run gives a curve of bpb against the training compute
spent so far, not just its end point. Training compute is counted as 6 x N x D (Kaplan et al.
2020): N the parameters that multiply activations (every linear layer, the output head
included; the embedding lookup is not a matmul), D the tokens seen; attention's own
O(seq_len) terms are left out (a few percent at these widths and seq 256).

Writes `sweep.png` (bpb against FLOPs, with the lower envelope of all evaluations: the
compute-efficient frontier, as in Hoffmann et al. 2022's first method; and bpb against
parameters), `sweep.json`, `report.md`, one MLflow run per depth and one for the sweep. The
fitted exponent is the slope of log(bpb) against log(FLOPs) over the runs' final points: bpb ~
FLOPs^-alpha. Does not cover: fitting an irreducible loss term (too few points), several
token budgets per depth (the frontier comes from each run's own evaluations instead).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chatworks.model.config import ModelConfig
from chatworks.training import corpus
from chatworks.training.pipeline import tokenizer_stage
from chatworks.training.presets import Preset
from chatworks.training.pretrain import pretrain, read_metrics
from chatworks.training.report import git_commit, hardware
from chatworks.training.tracking import start_tracking


def matmul_parameters(cfg: ModelConfig) -> int:
    """Weights of every linear layer, the output head included: the N of 6 x N x D."""
    attention = cfg.dim * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    mlp = 3 * cfg.dim * cfg.hidden_dim
    return cfg.n_layers * (attention + mlp) + cfg.dim * cfg.vocab_size


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(alpha, a) of y = a * x^-alpha, least squares in log-log space."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx
    )
    return -slope, math.exp(my - slope * mx)


def sweep(
    preset: Preset,
    depths: Sequence[int],
    tokens: int,
    out_dir: str | Path,
    sources: Sequence[str | Path] | None = None,
    track: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Train each depth on `tokens` tokens; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(s) for s in sources] if sources else corpus.default_sources()
    tokenizer, _ = tokenizer_stage(preset, paths, out / "tokenizer", compare=False)
    corpus.prepare_corpus(paths, tokenizer, out / "data", preset.corpus_bytes, preset.val_fraction)
    steps = max(1, tokens // preset.batch_tokens)
    runs: list[dict[str, Any]] = []
    for depth in depths:
        # Five evaluations per run draw its curve; the last one is its end point.
        p = preset.override(depth=depth, steps=steps, eval_every=max(1, steps // 5))
        tracker = start_tracking(track, f"{out.name}-d{depth}")
        tracker.log_params({**dataclasses.asdict(p), "sweep": out.name})
        log(f"[sweep] depth {depth}: {steps} steps of {p.batch_tokens:,} tokens")
        pretrain(p, out / "data", out / "tokenizer", out / f"d{depth}", tracker=tracker, log=log)
        tracker.close()
        cfg = p.model_config(tokenizer.vocab_size, 0, ())
        n = matmul_parameters(cfg)
        curve = [
            {"step": m["step"], "flops": 6 * n * m["step"] * p.batch_tokens, "bpb": m["val_bpb"]}
            for m in read_metrics(out / f"d{depth}" / "metrics.jsonl")
            if "val_bpb" in m
        ]
        runs.append({"depth": depth, "dim": cfg.dim, "parameters": n,
                     "tokens": steps * p.batch_tokens, "curve": curve,
                     "flops": curve[-1]["flops"], "bpb": curve[-1]["bpb"]})  # fmt: skip
    result: dict[str, Any] = {"runs": runs}
    if len(runs) > 1:
        result["alpha_flops"], result["a_flops"] = fit_power_law(
            [r["flops"] for r in runs], [r["bpb"] for r in runs]
        )
        result["alpha_params"], _ = fit_power_law(
            [r["parameters"] for r in runs], [r["bpb"] for r in runs]
        )
    (out / "sweep.json").write_text(json.dumps(result, indent=2))
    plot = plot_sweep(result, out / "sweep.png")
    report = write_sweep_report(out, result, preset, tokens)
    tracker = start_tracking(track, out.name)
    tracker.log_params({"depths": ",".join(map(str, depths)), "tokens": tokens})
    tracker.log_metrics({k: v for k, v in result.items() if k.startswith(("alpha", "a_"))}, 0)
    for artifact in (plot, report, out / "sweep.json"):
        tracker.log_artifact(artifact)
    tracker.close()
    return report


def frontier(runs: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """The lowest bpb reached at or below each compute of any evaluation: the envelope."""
    points = sorted((c["flops"], c["bpb"]) for r in runs for c in r["curve"])
    envelope: list[tuple[float, float]] = []
    for flops, bpb in points:
        if not envelope or bpb < envelope[-1][1]:
            envelope.append((flops, bpb))
    return envelope


def plot_sweep(result: dict[str, Any], path: Path) -> Path:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for r in runs:
        label = f"depth {r['depth']} ({r['parameters'] / 1e6:.1f}M)"
        xs, ys = [c["flops"] for c in r["curve"]], [c["bpb"] for c in r["curve"]]
        left.plot(xs, ys, "o-", ms=3, alpha=0.6, label=label)
    envelope = frontier(runs)
    left.plot(*zip(*envelope, strict=True), "k--", lw=1, label="frontier")
    if "alpha_flops" in result:
        xs = sorted(r["flops"] for r in runs)
        fit = [result["a_flops"] * x ** -result["alpha_flops"] for x in xs]
        left.plot(xs, fit, "r:", label=f"fit: bpb ~ C^{-result['alpha_flops']:.3f}")
    left.set(xscale="log", yscale="log", xlabel="training FLOPs (6ND)",
             ylabel="validation bits per byte")  # fmt: skip
    left.legend(fontsize=7)
    right.plot([r["parameters"] for r in runs], [r["bpb"] for r in runs], "o-")
    for r in runs:
        right.annotate(f"d{r['depth']}", (r["parameters"], r["bpb"]), fontsize=8)
    right.set(xscale="log", yscale="log", xlabel="parameters (matmul)", ylabel="final val bpb")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        # Plain numbers on the bpb axis: a log axis would label 2.3 as "2.3 x 10^0".
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2f"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_sweep_report(out: Path, result: dict[str, Any], preset: Preset, tokens: int) -> Path:
    lines = [
        f"# Scaling sweep `{out.name}`", "",
        f"- commit: `{git_commit()}`", f"- hardware: {hardware()}",
        f"- preset `{preset.name}`, {tokens:,} tokens per depth, seq {preset.seq_len}", "",
        "| depth | dim | matmul params | tokens | training FLOPs | val bpb |",
        "|---|---|---|---|---|---|",
        *(f"| {r['depth']} | {r['dim']} | {r['parameters']:,} | {r['tokens']:,} | "
          f"{r['flops']:.3g} | {r['bpb']:.4f} |" for r in result["runs"]),
        "",
    ]  # fmt: skip
    if "alpha_flops" in result:
        lines += [f"Fit over the final points: bpb ~ FLOPs^{-result['alpha_flops']:.3f}, "
                  f"bpb ~ params^{-result['alpha_params']:.3f}.", ""]  # fmt: skip
    lines += ["![sweep](sweep.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path

"""A run's report: `report.md` with numbers, config, commit, hardware and timings, plus PNG plots.

Covers: loss / learning-rate / bits-per-byte curves from each stage's `metrics.jsonl`, and the
markdown page that links them. Does not cover: computing any of the numbers (`evaluate.py`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from chatworks.training.pretrain import read_metrics

PLOTS = {  # file -> (metric key, y label)
    "loss.png": ("loss", "training loss (nats/token)"),
    "lr.png": ("lr_multiplier", "learning rate (x peak)"),
    "bpb.png": ("val_bpb", "validation bits per byte"),
}


def plot_metrics(run_dir: Path, stages: list[str]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    written = []
    for filename, (key, label) in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for stage in stages:
            rows = [r for r in read_metrics(run_dir / stage / "metrics.jsonl") if key in r]
            if rows:
                ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=stage)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / filename, dpi=100)
        plt.close(fig)
        written.append(run_dir / filename)
    return written


def git_commit() -> str:
    try:
        out = subprocess.run(  # the code's checkout, wherever the run directory is
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor()
    return (
        f"{device or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )


def write_report(run_dir: Path, summary: dict[str, Any], config: dict[str, Any]) -> Path:
    lines = [
        f"# Training run `{run_dir.name}`",
        "",
        f"- commit: `{git_commit()}`",
        f"- hardware: {hardware()}",
        "",
        "## Results",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {_fmt(v)} |" for k, v in summary["results"].items()),
        "",
        "## Timings (seconds)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *(f"| {k} | {v:.1f} |" for k, v in summary["timings"].items()),
        "",
        "## Plots",
        "",
        *(f"![{name}]({name})" for name in PLOTS),
        "",
        "## Sample chats (SFT model, greedy)",
        "",
        # Quoted, so whitespace-only answers (common for tiny models) and stray Markdown show.
        *(f"**user:** {q}\n\n**assistant:**\n```\n{a!r}\n```\n" for q, a in summary["chats"]),
        "## Config",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
    ]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)

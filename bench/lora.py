"""Full fine-tuning against LoRA adapters of several ranks: same data, same steps, this machine.

    .venv/bin/python bench/lora.py --out runs/lora-bench [--ranks 4,16,64] [--steps 12]
        [--batch 4] [--seq-len 256] [--conversations 400] [--threads 1] [--probes]
        [--bf16-ranks 16]   # also LoRA on a bfloat16 frozen base

Each configuration is one `chatworks train sft` process (so its peak resident memory is its
own, read with `wait4`), from the bundled SmolLM2-135M-Instruct on the same ShareGPT
conversations. Reported: trainable parameters, peak RSS, median seconds per step (first step
excluded: allocation), the size of what the run writes for its weights (the adapter file, or
the full model), and quality: loss and bits per byte of the held-out answers (the same 1 in 20
conversations for all, the untouched model as the baseline row) and, with `--probes`, the
model-probe pass rates (`chatworks eval probes`, grounded answers generated, int4 serving).
The optimizer is AdamW in every row; learning rates are each method's default (full 3e-5,
LoRA 10x that). Prints a Markdown table and writes it, with the raw numbers, to
`OUT/results.json`. Resumable: a configuration whose run finished is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BIN = Path(sys.executable).parent


def run_config(
    out: Path, args: argparse.Namespace, adapter: str, rank: int, base_dtype: str
) -> dict:
    cmd = [
        str(BIN / "chatworks"), "train", "sft", "--out", str(out), "--steps", str(args.steps),
        "--batch", str(args.batch), "--seq-len", str(args.seq_len),
        "--max-conversations", str(args.conversations), "--threads", str(args.threads),
        "--adapter", adapter, "--rank", str(rank), "--base-dtype", base_dtype, "--no-track",
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(cmd)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"{' '.join(cmd)} failed ({status})")
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step_s"] for m in metrics if "step_s" in m][1:]
    final = [m for m in metrics if "val_loss" in m][-1]
    checkpoint = out / "checkpoint"
    meta = json.loads((checkpoint / "meta.json").read_text())
    weights = checkpoint / ("adapter.safetensors" if adapter == "lora" else "model.pt")
    return {
        "trainable": meta["trainable_parameters"],
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux reports KiB
        "s_per_step": statistics.median(steps),
        "weights_mb": weights.stat().st_size / 2**20,
        "val_loss": final["val_loss"],
        "val_bpb": final["val_bpb"],
        "wall_s": time.perf_counter() - started,
    }


def baseline(args: argparse.Namespace) -> dict:
    """The untouched model on the same held-out answers."""
    from chatworks.model import load_pretrained
    from chatworks.training.presets import get_preset
    from chatworks.training.sft import answer_loss, load_conversations, split_examples
    from chatworks.training.tokenizer_train import token_bytes

    torch.set_num_threads(args.threads)
    preset = get_preset("tiny").override(seq_len=args.seq_len)
    model, tokenizer = load_pretrained()
    conversations = load_conversations(None, args.conversations, 3 * args.seq_len)
    _, val = split_examples(tokenizer, conversations, preset)
    sizes = torch.tensor(token_bytes(tokenizer), dtype=torch.float64)
    return answer_loss(model, val, sizes, torch.device("cpu"))


def probes(model: str | None) -> dict:
    """Model-probe pass rates with grounded answers generated (not quoted)."""
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CHATWORKS_DATA_DIR": data, "CHATWORKS_RAG_ANSWER": "generate"}
        if model:
            env["CHATWORKS_MODEL"] = model
        reports = Path(data) / "reports"
        subprocess.run([str(BIN / "chatworks"), "eval", "probes", "--out", str(reports)],
                       env=env, check=True)  # fmt: skip
        report = json.loads(next(reports.glob("probes-*.json")).read_text())
        return {k: v for k, v in report["metrics"].items() if k.endswith("pass_rate")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lora-bench"))
    parser.add_argument("--ranks", default="4,16,64")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16-ranks", default="", help="LoRA ranks on a bfloat16 frozen base")
    parser.add_argument("--probes", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    ranks = [int(r) for r in args.ranks.split(",")]
    configs = [("full", "full", 0, "float32")] + [
        (f"lora r{r}", "lora", r, "float32") for r in ranks
    ]
    configs += [(f"lora r{r} bf16 base", "lora", int(r), "bfloat16")
                for r in filter(None, args.bf16_ranks.split(","))]  # fmt: skip
    if "baseline" not in results:
        results["baseline"] = baseline(args)
    for name, adapter, rank, base_dtype in configs:
        if name not in results:
            run_dir = args.out / name.replace(" ", "-")
            results[name] = run_config(run_dir, args, adapter, rank, base_dtype)
            results_path.write_text(json.dumps(results, indent=2))
        if args.probes and "probes" not in results[name]:
            results[name]["probes"] = probes(str(args.out / name.replace(" ", "-")))
            results_path.write_text(json.dumps(results, indent=2))
    if args.probes and "probes" not in results["baseline"]:
        results["baseline"]["probes"] = probes(None)
    results_path.write_text(json.dumps(results, indent=2))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.steps} steps x {args.batch} "
          f"conversations (seq {args.seq_len}), {args.threads} thread(s)")  # fmt: skip
    print("| run | trainable params | peak RSS | s/step | weights written | held-out loss | "
          "held-out bpb | probes chat / grounded |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        p = r.get("probes", {})
        rates = f"{p['chat_pass_rate']:.3f} / {p['grounded_pass_rate']:.3f}" if p else ""
        quality = f"{r['val_loss']:.4f} | {r['val_bpb']:.4f} | {rates}"
        if name == "baseline":
            print(f"| SmolLM2 untouched | | | | | {quality} |")
            continue
        print(f"| {name} | {r['trainable']:,} | {r['peak_rss_mb']:,.0f} MB | {r['s_per_step']:.1f} "
              f"| {r['weights_mb']:.1f} MB | {quality} |")  # fmt: skip


if __name__ == "__main__":
    main()

"""The whole pipeline in one call: tokenizer -> shards -> pretraining -> SFT -> eval -> export.

Each stage writes into the run directory, so an interrupted `chatworks train run` continues where
it stopped: the tokenizer and finished shards are reused, pretraining and SFT resume from their
checkpoints (a finished one reloads its inputs and finds no steps left), eval and export rerun.
Layout of `runs/NAME/`: `tokenizer/`, `data/`, `base/` and `sft/` (each with `checkpoint/`,
`metrics.jsonl`), `export/hf/`, `export/model.gguf`, `report.md`, `*.png`.
Runs as one process (on the GPU when there is one). Does not cover: several processes; for
DDP, run the stages one by one and `train base` (or `sft`) under `torchrun`.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from chatworks.model import bundled_model_path, gguf_io, load_pretrained
from chatworks.model.tokenizer import Tokenizer
from chatworks.training import corpus, sft
from chatworks.training.data import TokenStream
from chatworks.training.ddp import local_world
from chatworks.training.evaluate import bits_per_byte, cloze_task, greedy, mc_accuracy
from chatworks.training.export import export
from chatworks.training.presets import Preset
from chatworks.training.pretrain import pretrain
from chatworks.training.report import plot_metrics, write_report
from chatworks.training.tokenizer_train import (
    bytes_per_token,
    load_tokenizer,
    token_bytes,
    train_tokenizer,
)
from chatworks.training.tracking import Tracker, start_tracking

CHAT_PROMPTS = ("What is a Python list?", "How do I open a file?", "Say hello.")
MC_ITEMS = 100


@contextmanager
def timed(timings: dict[str, float], stage: str, log: Callable[[str], None]) -> Iterator[None]:
    log(f"[{stage}] ...")
    started = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - started
    log(f"[{stage}] done in {timings[stage]:.1f}s")


def tokenizer_stage(
    preset: Preset, sources: Sequence[Path], out: Path, compare: bool = True
) -> tuple[Tokenizer, dict[str, float]]:
    """Train (or reuse) the tokenizer; compare its compression with the default model's."""
    if (out / "tokenizer.json").exists():
        tokenizer = load_tokenizer(out)
    else:
        texts = corpus.split_texts(sources, preset.corpus_bytes, preset.val_fraction, "train")
        tokenizer = train_tokenizer(texts, preset.vocab_size, out)
    if not compare:
        return tokenizer, {}
    held_out = list(corpus.split_texts(sources, preset.corpus_bytes, preset.val_fraction, "val"))
    results = {"tokenizer bytes/token (val)": bytes_per_token(tokenizer, held_out)}
    try:
        reference = gguf_io.read_tokenizer(gguf_io.open_gguf(bundled_model_path()))
        results["SmolLM2 tokenizer bytes/token (val)"] = bytes_per_token(reference, held_out)
    except FileNotFoundError:  # the default model is not installed: no comparison
        pass
    return tokenizer, results


def evaluate_stage(
    run_dir: Path, preset: Preset, sources: Sequence[Path]
) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """Val bpb and cloze accuracy of both stages, and greedy chats with the SFT model."""
    val = TokenStream(run_dir / "data", "val")
    held_out = list(corpus.split_texts(sources, preset.corpus_bytes, preset.val_fraction, "val"))
    items = cloze_task(held_out, MC_ITEMS, seed=preset.seed)
    results: dict[str, float] = {}
    for stage in ("base", "sft"):
        model, tokenizer = load_pretrained(run_dir / stage)
        sizes = torch.tensor(token_bytes(tokenizer))
        _, bpb = bits_per_byte(
            model, val, sizes, preset.seq_len, preset.device_batch, preset.eval_tokens
        )
        results[f"{stage} val bpb"] = bpb
        results[f"{stage} cloze accuracy (chance 0.25, {MC_ITEMS} items)"] = mc_accuracy(
            model, tokenizer, items
        )
    chats = []
    for question in CHAT_PROMPTS:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}])
        answer = greedy(model, tokenizer.encode(prompt), 48, tokenizer.eos_token_ids)
        chats.append((question, tokenizer.decode(answer)))
    return results, chats


def run(
    preset: Preset,
    out: str | Path,
    sources: Sequence[str | Path] | None = None,
    chats: str | Path | None = None,
    track: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Every stage for `preset` into `out`; returns the report's path."""
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(s) for s in sources] if sources else corpus.default_sources()
    tracker: Tracker = start_tracking(track, run_dir.name)
    config = {**dataclasses.asdict(preset), "corpus": [str(p) for p in paths], "chats": str(chats)}
    tracker.log_params(config)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    world = local_world()

    with timed(timings, "tokenizer", log):
        tokenizer, compression = tokenizer_stage(preset, paths, run_dir / "tokenizer")
        results.update(compression)
    with timed(timings, "data", log):
        manifest = corpus.prepare_corpus(
            paths, tokenizer, run_dir / "data", preset.corpus_bytes, preset.val_fraction
        )
        results["train tokens"] = manifest.tokens("train")
        results["val tokens"] = manifest.tokens("val")
    with timed(timings, "pretrain", log):
        pretrain(preset, run_dir / "data", run_dir / "tokenizer", run_dir / "base", world,
                 tracker, log=log)  # fmt: skip
    with timed(timings, "sft", log):
        conversations = sft.load_conversations(
            chats, preset.sft_conversations, max_chars=3 * preset.seq_len
        )
        results["sft conversations"] = len(conversations)
        sft.sft(preset, run_dir / "base" / "checkpoint", conversations, run_dir / "sft", world,
                tracker, log=log)  # fmt: skip
    with timed(timings, "eval", log):
        scores, samples = evaluate_stage(run_dir, preset, paths)
        results.update(scores)
    with timed(timings, "export", log):
        export(run_dir, "hf", run_dir / "export" / "hf")
        export(run_dir, "gguf", run_dir / "export" / "model.gguf")
    timings["total"] = sum(timings.values())
    tracker.log_metrics(
        {_metric_name(k): float(v) for k, v in itertools.chain(results.items(), timings.items())},
        step=preset.steps,
    )
    plots = plot_metrics(run_dir, ["base", "sft"])
    report = write_report(run_dir, {"results": results, "timings": timings, "chats": samples},
                          config)  # fmt: skip
    for artifact in (report, *plots):
        tracker.log_artifact(artifact)
    tracker.close()
    return report


def _metric_name(label: str) -> str:
    """MLflow metric names allow letters, digits and _-./ only."""
    return "".join(c if c.isalnum() or c in "_-./" else "_" for c in label)

"""`chatworks train ...` (tokenizer, data, base, sft, eval, run) and `chatworks export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chatworks.cli.shared import console

app = typer.Typer(help="Train a chat model: tokenizer, data, base, sft, eval, or all (run).")

PresetOption = Annotated[str, typer.Option(help="micro, tiny, gpu-small or gpu-d20.")]
CorpusOption = Annotated[
    list[Path] | None,
    typer.Option("--corpus", help="Text files/dirs (.txt .md .rst .jsonl .parquet); "
                 "default: Debian python3.11-doc."),
]  # fmt: skip
ThreadsOption = Annotated[int | None, typer.Option(help="torch threads (default: all cores).")]
TrackOption = Annotated[bool, typer.Option(help="Log to MLflow (./mlruns).")]


def _log(message: str) -> None:
    console.print(message, markup=False, highlight=False)  # "[sft]" is text, not rich markup


def _preset(name: str, threads: int | None = None, **overrides):
    import torch

    from chatworks.training.presets import get_preset

    if threads:
        torch.set_num_threads(threads)
    return get_preset(name).override(**overrides)


@app.command("tokenizer")
def train_tokenizer(
    out: Annotated[Path, typer.Option(help="Directory for tokenizer.json and friends.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
    vocab_size: Annotated[int | None, typer.Option(help="Vocabulary size.")] = None,
) -> None:
    """Train a byte-level BPE tokenizer with chat tokens; print its compression."""
    from chatworks.training.pipeline import tokenizer_stage

    p = _preset(preset, vocab_size=vocab_size)
    _, results = tokenizer_stage(p, corpus or _default_corpus(), out)
    for name, value in results.items():
        console.print(f"{name}: {value:.3f}")


@app.command("data")
def train_data(
    tokenizer: Annotated[Path, typer.Option(help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option(help="Directory for shards + manifest.json.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
) -> None:
    """Clean, dedupe, split and tokenize a corpus into shards (resumable)."""
    from chatworks.training.corpus import prepare_corpus
    from chatworks.training.tokenizer_train import load_tokenizer

    p = _preset(preset)
    m = prepare_corpus(corpus or _default_corpus(), load_tokenizer(tokenizer), out,
                       p.corpus_bytes, p.val_fraction)  # fmt: skip
    console.print(f"train {m.tokens('train'):,} tokens, val {m.tokens('val'):,} tokens -> {out}")


@app.command("base")
def train_base(
    data: Annotated[Path, typer.Option(help="Shards from `train data`.")],
    tokenizer: Annotated[Path, typer.Option(help="Tokenizer directory.")],
    out: Annotated[Path, typer.Option(help="Stage directory (resumes from out/checkpoint).")],
    preset: PresetOption = "tiny",
    depth: Annotated[int | None, typer.Option(help="Layers; width etc. follow.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw or muon.")] = None,
    stop_after: Annotated[int | None, typer.Option(help="Stop (checkpointed) here.")] = None,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Pretrain; under `torchrun` every process trains its share of each batch (DDP)."""
    from chatworks.training.ddp import close_world, init_world
    from chatworks.training.pretrain import pretrain
    from chatworks.training.tracking import start_tracking

    p = _preset(preset, threads, depth=depth, steps=steps, optimizer=optimizer)
    world = init_world()
    tracker = start_tracking(track and world.is_main, out.name)
    log = _log if world.is_main else (lambda _: None)
    losses = pretrain(p, data, tokenizer, out, world, tracker, stop_after, log)
    tracker.close()
    close_world(world)
    if world.is_main and losses:
        console.print(f"final loss {losses[-1]:.4f}")


@app.command("sft")
def train_sft(
    out: Annotated[Path, typer.Option(help="Stage directory.")],
    base: Annotated[
        Path | None,
        typer.Option(
            help="Model to fine-tune: a run or checkpoint directory, a .gguf file or a "
            "Hugging Face directory; default: the bundled SmolLM2."
        ),
    ] = None,
    chats: Annotated[
        Path | None, typer.Option(help="JSONL of {messages: [...]}; default: ShareGPT.")
    ] = None,
    preset: PresetOption = "tiny",
    steps: Annotated[int | None, typer.Option(help="SFT steps.")] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="One AdamW rate for every weight; default: 3e-5 for imported models, "
            "0.3x the pretraining rates for a base trained here."
        ),
    ] = None,
    max_conversations: Annotated[
        int | None, typer.Option(help="Conversations to use (default: the preset's).")
    ] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per conversation.")] = None,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Chat fine-tuning with the loss on assistant tokens only."""
    from chatworks.model import bundled_model_path
    from chatworks.training.ddp import close_world, init_world
    from chatworks.training.sft import load_conversations, sft
    from chatworks.training.tracking import start_tracking

    p = _preset(preset, threads, sft_steps=steps, finetune_lr=lr, seq_len=seq_len,
                sft_conversations=max_conversations)  # fmt: skip
    conversations = load_conversations(chats, p.sft_conversations, 3 * p.seq_len)
    world = init_world()
    tracker = start_tracking(track and world.is_main, out.name)
    log = _log if world.is_main else (lambda _: None)
    losses = sft(p, base or bundled_model_path(), conversations, out, world, tracker, log)
    tracker.close()
    close_world(world)
    if world.is_main:
        status = f"final loss {losses[-1]:.4f}" if losses else "already trained"
        console.print(f"{len(conversations)} conversations, {status}")


@app.command("eval")
def train_eval(
    run: Annotated[Path, typer.Argument(help="Run directory with base/ and sft/.")],
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
) -> None:
    """Val bits per byte, cloze multiple choice, and sample chats."""
    from chatworks.training.pipeline import evaluate_stage

    results, chats = evaluate_stage(run, _preset(preset), corpus or _default_corpus())
    for name, value in results.items():
        console.print(f"{name}: {value:.4f}")
    for question, answer in chats:
        console.print(f"[bold]user:[/] {question}\n[bold]assistant:[/] {answer}", markup=True)


@app.command("run")
def train_run(
    out: Annotated[Path, typer.Option(help="Run directory, e.g. runs/NAME.")],
    preset: PresetOption = "tiny",
    corpus: CorpusOption = None,
    chats: Annotated[Path | None, typer.Option(help="SFT JSONL; default: ShareGPT.")] = None,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """The whole pipeline; re-running continues an interrupted run."""
    from chatworks.training.pipeline import run

    report = run(_preset(preset, threads), out, corpus, chats, track, _log)
    console.print(f"report: {report}\nserve it: chatworks serve --model {out}")


def _default_corpus() -> list[Path]:
    from chatworks.training.corpus import default_sources

    return default_sources()


def export_model(
    run: Annotated[
        Path, typer.Argument(help="Run, stage or checkpoint directory (or a .gguf / HF dir).")
    ],
    format: Annotated[str, typer.Option("--format", help="hf or gguf.")] = "gguf",
    out: Annotated[Path, typer.Option(help="Directory (hf) or .gguf file.")] = Path("model.gguf"),
) -> None:
    """Export a run (or any model chatworks loads) for transformers/vLLM or llama.cpp."""
    from chatworks.training.export import export

    console.print(f"wrote {export(run, format, out)}")  # type: ignore[arg-type]

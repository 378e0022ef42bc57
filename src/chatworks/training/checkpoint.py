"""Training checkpoints: the model's own format plus what resuming needs, swapped in atomically.

A checkpoint directory is `chatworks.model.checkpoint_io`'s (weights, config, tokenizer: what
`load_pretrained` serves) with `state.pt` beside it (optimizer, step, data position, RNG). A
model training a LoRA adapter checkpoints the adapter alone (`model/adapters.py`).
Does not cover: the Hugging Face and GGUF formats (`export.py`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from chatworks.model import adapters, checkpoint_io
from chatworks.model.adapters import AdapterSpec
from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer

STATE = "state.pt"


def save_checkpoint(
    out_dir: str | Path,
    model: Llama,
    tokenizer: Tokenizer,
    meta: dict[str, Any],
    state: dict[str, Any],
    adapter: AdapterSpec | None = None,
) -> None:
    """Write to a temporary directory, then swap it in: a crash never leaves half a checkpoint.

    With `adapter`, `model` carries peft's LoRA layers and only their weights are written."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if adapter is None:
        checkpoint_io.write(tmp, model, tokenizer, meta)
    else:
        from chatworks.training.lora import lora_weights

        adapters.write(tmp, lora_weights(model), adapter)
        checkpoint_io.write_meta(tmp, model.cfg, tokenizer, {**meta, "adapter": adapter})
    torch.save(state, tmp / STATE)
    old = out.with_name(out.name + ".old")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def has_state(path: str | Path) -> bool:
    """Whether `path` holds a checkpoint to resume from. A crash between `save_checkpoint`'s two
    renames leaves only `path.old`, the last complete checkpoint: it is put back first."""
    path = Path(path)
    old = path.with_name(path.name + ".old")
    if not path.exists() and old.exists():
        old.rename(path)
    return Path(path, STATE).exists()


def load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path, STATE), weights_only=False)

"""Training checkpoints: one directory holding everything needed to resume or to serve.

`model.pt` (weights), `state.pt` (optimizer, step, data cursor, RNG - only what resuming needs),
`meta.json` (model config, preset, stage) and the tokenizer files beside them, so a checkpoint
directory is self-contained: `load_model(dir)` gives back the `Llama` and its `Tokenizer`.
Does not cover: the Hugging Face and GGUF formats (`export.py`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from chatworks.model.config import ModelConfig
from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer
from chatworks.training.tokenizer_train import load_tokenizer

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def save_checkpoint(
    out_dir: str | Path,
    model: Llama,
    tokenizer_dir: str | Path,
    meta: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Write to a temporary directory, then swap it in: a crash never leaves half a checkpoint."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.state_dict(), tmp / "model.pt")
    torch.save(state, tmp / "state.pt")
    meta = {**meta, "model": dataclasses.asdict(model.cfg)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    for name in TOKENIZER_FILES:
        shutil.copy(Path(tokenizer_dir, name), tmp / name)
    old = out.with_name(out.name + ".old")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def read_meta(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path, "meta.json").read_text())


def model_config(meta: dict[str, Any]) -> ModelConfig:
    cfg = dict(meta["model"])
    cfg["eos_token_ids"] = tuple(cfg["eos_token_ids"])
    return ModelConfig(**cfg)


def load_model(path: str | Path) -> tuple[Llama, Tokenizer]:
    """A checkpoint's model (float32, eval mode) and tokenizer."""
    cfg = model_config(read_meta(path))
    model = Llama(cfg)
    model.load_state_dict(torch.load(Path(path, "model.pt"), weights_only=True))
    return model.eval(), load_tokenizer(path)


def load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path, "state.pt"), weights_only=False)

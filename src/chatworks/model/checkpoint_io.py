"""chatworks' own checkpoint format: one directory with the weights, the config and the tokenizer.

`model.pt` (a torch state dict), `meta.json` (the model config under "model", plus whatever the
writer records: stage, step, preset, the model it started from) and the tokenizer files. Training
writes these (`training/checkpoint.py` adds the optimizer state beside them); `load_pretrained`
reads them. A run directory (`runs/NAME`) stands for its most finished stage: sft, then base.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from chatworks.model.config import ModelConfig
from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer

WEIGHTS, META = "model.pt", "meta.json"
STAGES = ("sft", "base")  # the most finished stage comes first


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint `path` names: itself, a stage directory's, or a run directory's latest."""
    path = Path(path)
    candidates = [path, path / "checkpoint", *(path / stage / "checkpoint" for stage in STAGES)]
    return next((c for c in candidates if (c / WEIGHTS).exists()), None)


def write(path: str | Path, model: Llama, tokenizer: Tokenizer, meta: dict[str, Any]) -> None:
    """Weights, config and tokenizer into the existing directory `path`."""
    path = Path(path)
    torch.save(model.state_dict(), path / WEIGHTS)
    meta = {**meta, "model": dataclasses.asdict(model.cfg)}
    (path / META).write_text(json.dumps(meta, indent=2))
    tokenizer.save(path)


def read_meta(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path, META).read_text())


def read_config(path: str | Path) -> ModelConfig:
    cfg = dict(read_meta(path)["model"])
    cfg["eos_token_ids"] = tuple(cfg["eos_token_ids"])
    return ModelConfig(**cfg)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(path, WEIGHTS), weights_only=True, map_location="cpu")

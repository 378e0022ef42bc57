"""chatworks' own checkpoint format: one directory with the weights, the config and the tokenizer.

`model.pt` (a torch state dict), `meta.json` (the model config under "model", plus whatever the
writer records: stage, step, preset, the model it started from) and the tokenizer files. An
adapter checkpoint holds `adapter.safetensors` instead of `model.pt` (`adapters.py`); loading
merges it into its base. Training writes these (`training/checkpoint.py` adds the optimizer
state beside them); `load_pretrained` reads them. A run directory (`runs/NAME`) stands for its
most finished stage: sft, then base.
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
ADAPTER = "adapter.safetensors"  # an adapter checkpoint's weights instead (`adapters.py`)
STAGES = ("sft", "base")  # the most finished stage comes first


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint `path` names: itself, a stage directory's, or a run directory's latest."""
    path = Path(path)
    candidates = [path, path / "checkpoint", *(path / stage / "checkpoint" for stage in STAGES)]
    return next((c for c in candidates if (c / WEIGHTS).exists() or (c / ADAPTER).exists()), None)


def write(path: str | Path, model: Llama, tokenizer: Tokenizer, meta: dict[str, Any]) -> None:
    """Weights, config and tokenizer into the existing directory `path`."""
    torch.save(model.state_dict(), Path(path, WEIGHTS))
    write_meta(path, model.cfg, tokenizer, meta)


def write_meta(path: str | Path, cfg: ModelConfig, tokenizer: Tokenizer, meta: dict[str, Any]):
    """Config, `meta` and tokenizer files: everything of a checkpoint but its weights."""
    path = Path(path)
    meta = {**meta, "model": dataclasses.asdict(cfg)}
    (path / META).write_text(json.dumps(meta, indent=2, default=_jsonable))
    tokenizer.save(path)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def read_meta(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path, META).read_text())


def read_config(path: str | Path) -> ModelConfig:
    cfg = dict(read_meta(path)["model"])
    cfg["eos_token_ids"] = tuple(cfg["eos_token_ids"])
    return ModelConfig(**cfg)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(Path(path, WEIGHTS), weights_only=True, map_location="cpu")

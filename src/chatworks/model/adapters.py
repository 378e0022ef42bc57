"""LoRA adapters as files, and merging one into its base model: what loading needs, without peft.

An adapter checkpoint is a chatworks checkpoint directory (`meta.json`, tokenizer files) whose
weights are `adapter.safetensors` instead of `model.pt`: for each adapted linear layer `NAME`,
`NAME.lora_A` [rank, in] and `NAME.lora_B` [out, rank]. `meta.json`'s "adapter" entry names the
rank, alpha and the base model (a path, or null for the bundled default). Merged, a layer's
weight is W + (alpha / rank) B A (Hu et al. 2021, "LoRA"), so a merged model is an ordinary
`Llama` that every exporter and the engine take as it is.

Does not cover: training adapters (`chatworks.training.lora`, with peft), or applying one
without merging it (one base serving many adapters per request: docs/training.md says why not).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from chatworks.model.llama import Llama

ADAPTER = "adapter.safetensors"
# Every linear layer of a block: adapting all of them, MLP included, is what lets LoRA match full
# fine-tuning; attention-only adapters fall behind (Schulman et al. 2025, "LoRA Without Regret").
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class AdapterSpec:
    rank: int
    alpha: float = 32.0
    targets: tuple[str, ...] = ALL_LINEAR
    base: str | None = None  # the model adapted: a path, or None for the bundled default
    base_dtype: str = "float32"  # how the frozen base was held while training ("bfloat16")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def is_adapter(path: str | Path) -> bool:
    return Path(path, ADAPTER).exists()


def write(path: str | Path, weights: dict[str, torch.Tensor], spec: AdapterSpec) -> None:
    """The adapter's weights into the existing checkpoint directory `path` (meta and tokenizer
    are the caller's, as for full checkpoints)."""
    tensors = {k: v.detach().float().contiguous() for k, v in weights.items()}
    save_file(tensors, str(Path(path, ADAPTER)), metadata={"adapter": json.dumps(asdict(spec))})


def read(path: str | Path) -> tuple[AdapterSpec, dict[str, torch.Tensor]]:
    from safetensors import safe_open

    file = str(Path(path, ADAPTER))
    with safe_open(file, "pt") as f:
        raw = json.loads(f.metadata()["adapter"])
    raw["targets"] = tuple(raw["targets"])
    return AdapterSpec(**raw), load_file(file)


def asdict(spec: AdapterSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def layer_names(weights: dict[str, torch.Tensor]) -> list[str]:
    return sorted({k.rsplit(".", 1)[0] for k in weights})


@torch.no_grad()
def merge(model: Llama, weights: dict[str, torch.Tensor], spec: AdapterSpec) -> Llama:
    """W += scale * B @ A for every adapted layer, in place (in float32, whatever W's dtype)."""
    for name in layer_names(weights):
        linear = model.get_submodule(name)
        delta = spec.scale * weights[f"{name}.lora_B"].float() @ weights[f"{name}.lora_A"].float()
        linear.weight.copy_((linear.weight.float() + delta).to(linear.weight.dtype))
    return model

"""LoRA adapters for training: peft's layers injected into our `Llama`, frozen base, small files.

`add_lora` freezes every weight of the model and wraps the chosen linear layers with peft's LoRA
layers (the model stays a `Llama`: the training loop, losses and samplers do not know). Only the
adapter's A and B matrices train, so the optimizer holds two moments of ~1% of the weights and a
checkpoint is megabytes (`model/adapters.py` writes it; loading merges it into the base). The
frozen base can be held in bfloat16 (`base_dtype`), halving its memory: the adapter still trains
in float32. Learning rate: LoRA wants about ten times full fine-tuning's
(`LORA_LR_FACTOR`).

Does not cover: a 4-bit frozen base (QLoRA proper: torch's CPU int4 matmul has no backward, and
a dense copy for the backward pass would give back the memory it saves), dropout on the adapter
input (short runs on small data; the rank is the regulariser), DoRA and other peft variants.
"""

from __future__ import annotations

from pathlib import Path

import torch

from chatworks.model import adapters
from chatworks.model.adapters import AdapterSpec
from chatworks.model.llama import Llama

# "LoRA Without Regret" (Schulman et al. 2025): with alpha fixed (32) the best LoRA rate is
# ~10x the best full fine-tuning rate, at every rank.
LORA_LR_FACTOR = 10.0


def add_lora(model: Llama, spec: AdapterSpec) -> int:
    """Freeze `model`, inject LoRA layers in place (B = 0: the model's function is unchanged);
    returns the number of trainable parameters."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # peft imports huggingface_hub
    from peft import LoraConfig, inject_adapter_in_model

    if spec.base_dtype == "bfloat16":
        cos, sin = model.rope_cos, model.rope_sin  # RoPE tables stay float32, as when serving
        model.to(torch.bfloat16)
        model.rope_cos, model.rope_sin = cos, sin
    model.requires_grad_(False)
    config = LoraConfig(
        r=spec.rank, lora_alpha=spec.alpha, target_modules=list(spec.targets),
        lora_dropout=0.0, bias="none",
    )  # fmt: skip
    inject_adapter_in_model(config, model)
    trainable = 0
    for name, p in model.named_parameters():
        if ".lora_" in name:
            p.data = p.data.float()  # peft makes them in the base layer's dtype
            p.requires_grad_(True)
            trainable += p.numel()
    return trainable


def _lora_layers(model: Llama) -> dict[str, torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def lora_weights(model: Llama) -> dict[str, torch.Tensor]:
    """`NAME.lora_A` / `NAME.lora_B` for every adapted layer: the adapter file's layout."""
    out = {}
    for name, layer in _lora_layers(model).items():
        out[f"{name}.lora_A"] = layer.lora_A["default"].weight.detach()
        out[f"{name}.lora_B"] = layer.lora_B["default"].weight.detach()
    return out


@torch.no_grad()
def load_lora_weights(model: Llama, path: str | Path) -> None:
    """Copy a saved adapter's weights into a model `add_lora` prepared (to resume)."""
    _, weights = adapters.read(path)
    for name, layer in _lora_layers(model).items():
        layer.lora_A["default"].weight.copy_(weights[f"{name}.lora_A"])
        layer.lora_B["default"].weight.copy_(weights[f"{name}.lora_B"])


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters; tied weights counted once."""
    seen = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in seen if p.requires_grad), sum(p.numel() for p in seen)

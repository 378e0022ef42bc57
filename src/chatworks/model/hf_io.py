"""Read a Hugging Face Llama-style model directory (config.json + *.safetensors), no transformers.

Covers: `LlamaForCausalLM`-shaped checkpoints (Llama, SmolLM, Mistral without sliding window,
Qwen3's QK-norm), single-file or sharded safetensors, any float dtype (loaded as float32).
Writes our own models the same way (`write_checkpoint`), so transformers loads them as Llama.
Does not cover: attention or MLP biases (Qwen2), sliding windows, pickled `.bin` weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from chatworks.model.config import ModelConfig


def read_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    hf: dict[str, Any] = json.loads((path / "config.json").read_text())
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ValueError("checkpoints with attention/MLP biases are not supported")
    # transformers v5 moved rope_theta and the scaling dict into one `rope_parameters`.
    rope = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = rope.pop("rope_theta", hf.get("rope_theta", 10_000.0))
    scaling = rope if rope.get("rope_type", rope.get("type", "default")) != "default" else None
    eos = hf.get("eos_token_id")
    generation = path / "generation_config.json"
    if generation.exists():  # chat models list their end-of-turn ids here
        eos = json.loads(generation.read_text()).get("eos_token_id", eos)
    n_heads = hf["num_attention_heads"]
    return ModelConfig(
        vocab_size=hf["vocab_size"],
        dim=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads,
        hidden_dim=hf["intermediate_size"],
        head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
        rope_theta=float(theta),
        rope_scaling=scaling,
        norm_eps=hf.get("rms_norm_eps", 1e-5),
        tie_embeddings=hf.get("tie_word_embeddings", False),
        qk_norm=hf.get("model_type") == "qwen3",
        max_seq_len=hf.get("max_position_embeddings", 2048),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_ids=tuple(eos if isinstance(eos, list) else [] if eos is None else [eos]),
    )


def read_state_dict(path: str | Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """All safetensors shards, float32, with the `model.` prefix dropped (our module names)."""
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(Path(path).glob("*.safetensors")):
        for name, tensor in load_file(shard).items():
            state[name.removeprefix("model.")] = tensor.float()
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    return state


def write_checkpoint(path: str | Path, cfg: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """config.json, generation_config.json and model.safetensors for `LlamaForCausalLM`.

    Tokenizer files are the caller's: they come with the tokenizer, not the weights.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    eos = list(cfg.eos_token_ids)
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": cfg.rope_scaling,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else eos,
        "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(hf, indent=2))
    generation = {"bos_token_id": cfg.bos_token_id, "eos_token_id": eos}
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    tensors = {
        (name if name.startswith("lm_head") else f"model.{name}"): t.detach().float().contiguous()
        for name, t in state.items()
        if not (cfg.tie_embeddings and name.startswith("lm_head"))
    }
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})

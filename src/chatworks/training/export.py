"""Export a training checkpoint to the formats other servers load: Hugging Face and GGUF.

`hf`: a directory `transformers.AutoModelForCausalLM` loads as `LlamaForCausalLM` (safetensors,
config, tokenizer files, chat template) - also what vLLM serves. `gguf`: one float32 file that
llama.cpp, Ollama and our own engine load. Both load back through
`chatworks.model.load_pretrained`. Does not cover: quantization (llama.cpp's `llama-quantize`
does it from the GGUF), or importing (`chatworks.model` reads both formats already).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from chatworks.model import gguf_io, hf_io
from chatworks.training.checkpoint import TOKENIZER_FILES, load_model
from chatworks.training.tokenizer_train import PRE_TOKENIZER_NAME

STAGES = ("sft", "base")  # the most finished stage comes first


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, a stage directory, or the latest stage's in a run directory."""
    path = Path(path)
    for candidate in (path, path / "checkpoint"):
        if (candidate / "model.pt").exists():
            return candidate
    for stage in STAGES:
        if (path / stage / "checkpoint" / "model.pt").exists():
            return path / stage / "checkpoint"
    raise FileNotFoundError(f"{path}: no checkpoint (looked for sft/ and base/checkpoint)")


def export(run: str | Path, fmt: Literal["hf", "gguf"], out: str | Path) -> Path:
    source = find_checkpoint(run)
    model, tokenizer = load_model(source)
    out = Path(out)
    if fmt == "hf":
        hf_io.write_checkpoint(out, model.cfg, model.state_dict())
        for name in TOKENIZER_FILES:
            shutil.copy(source / name, out / name)
    elif fmt == "gguf":
        out.parent.mkdir(parents=True, exist_ok=True)
        gguf_io.write_gguf(
            out, model.cfg, model.state_dict(), tokenizer, PRE_TOKENIZER_NAME, name=Path(run).name
        )
    else:
        raise ValueError(f"unknown export format {fmt!r}: hf or gguf")
    return out

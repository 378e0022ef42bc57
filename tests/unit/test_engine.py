"""The continuous-batching engine (constrained decoding included) and the native provider, on
the real bundled weights (fp32)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from chatworks.engine.constraints import (
    Constrainer,
    GrammarError,
    json_schema_grammar,
    lark_grammar,
)
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine, Finish, QueueFull
from chatworks.engine.textstream import REPLACEMENT
from chatworks.model import load_pretrained
from chatworks.providers.base import GenerationRequest, Message, Provider, ProviderError
from chatworks.providers.native import NativeProvider
from chatworks.settings import Settings
from tests.reference import assert_near_greedy

pytestmark = pytest.mark.kernels  # computes with real weights: run again on AVX2

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time 12345 émigré 😀",
    "List three colors:",
    "import numpy as np\n",
]
GREEDY = SamplingParams(max_tokens=16, temperature=0)


@pytest.fixture(scope="module")
def loaded():
    return load_pretrained()


@pytest.fixture(scope="module")
def constrainer(loaded):
    model, tok = loaded
    return Constrainer(tok.hf.to_str(), tok.eos_token_ids, model.cfg.vocab_size)


@pytest.fixture(scope="module")
def engine(loaded, constrainer):
    eng = Engine(loaded[0], slots=4, max_waiting=8, constrainer=constrainer).start()
    yield eng
    eng.stop()


def _ids(loaded, prompt: str) -> list[int]:
    return loaded[1].encode(prompt)


def _collect(engine: Engine, ids: list[int], params: SamplingParams, matcher=None):
    """Submit and return (tokens list, done event, finish list) filled from the engine thread."""
    tokens: list[int] = []
    finish: list[Finish] = []
    done = threading.Event()

    def emit(event):
        if isinstance(event, Finish):
            finish.append(event)
            done.set()
        else:
            tokens.append(event)

    handle = engine.submit(ids, params, emit, matcher)
    return tokens, finish, done, handle


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_batched_decoding_is_greedy_with_joins_and_leaves(loaded, engine):
    """Sequences that join and leave a running batch each get their own greedy continuation.
    Checked against a full forward pass of the same model, token by token (tests/reference.py),
    not against the same prompts decoded alone: a batch of 4 runs other matmul kernels than a
    batch of 1, so exact equality would hold on one CPU and not another."""
    lengths = [16, 6, 12, 9, 16]  # different max_tokens: sequences leave mid-stream
    runs = []
    for i, (prompt, n) in enumerate(zip(PROMPTS, lengths, strict=True)):
        runs.append(
            _collect(engine, _ids(loaded, prompt), SamplingParams(max_tokens=n, temperature=0))
        )
        if i in (0, 2):  # later requests join while earlier ones are mid-generation
            _wait_for(lambda r=runs[-1]: len(r[0]) >= 3)
    for (tokens, finish, done, _), prompt, n in zip(runs, PROMPTS, lengths, strict=True):
        assert done.wait(60)
        assert finish[0].reason == "length" and len(tokens) == n
        assert_near_greedy(lambda ids: loaded[0](torch.tensor([ids]))[0], _ids(loaded, prompt),
                           tokens)  # fmt: skip


def test_seed_gives_same_tokens_alone_and_in_a_batch(loaded, engine):
    ids = _ids(loaded, PROMPTS[3])
    seeded = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, top_k=50, seed=1234)
    first = engine.generate(ids, seeded)[0]
    noise = [_collect(engine, _ids(loaded, p), GREEDY) for p in PROMPTS[:2]]
    second = engine.generate(ids, seeded)[0]
    other = engine.generate(ids, SamplingParams(max_tokens=16, temperature=1.0, seed=99))[0]
    for run in noise:
        run[2].wait(60)
    assert first == second
    assert first != other


def test_max_tokens_ends_with_length(loaded, engine):
    tokens, finish = engine.generate(
        _ids(loaded, PROMPTS[0]), SamplingParams(max_tokens=3, temperature=0)
    )
    assert len(tokens) == 3
    assert finish == Finish("length", len(_ids(loaded, PROMPTS[0])), 3)


def test_finish_reports_phase_times_in_order(loaded, engine):
    """Queue, prefill and decode spans are built from these (api/generation.py)."""
    _, finish = engine.generate(_ids(loaded, PROMPTS[0]), SamplingParams(max_tokens=3))
    assert finish.submitted_ns > 0
    assert finish.submitted_ns <= finish.admitted_ns <= finish.first_token_ns
    assert finish.first_token_ns <= finish.finished_ns


def test_stop_token_ends_with_stop(loaded, engine):
    tokenizer = loaded[1]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Say hi."}])
    params = SamplingParams(max_tokens=200, temperature=0, stop_token_ids=tokenizer.eos_token_ids)
    tokens, finish = engine.generate(tokenizer.encode(chat), params)
    assert finish.reason == "stop"
    assert finish.completion_tokens == len(tokens) + 1  # the EOS counts, but is not emitted
    assert not set(tokens) & set(tokenizer.eos_token_ids)


def test_cancel_frees_the_slot_and_full_queue_raises(loaded):
    engine = Engine(loaded[0], slots=1, max_waiting=0).start()
    try:
        long = SamplingParams(max_tokens=500, temperature=0)
        tokens, finish, done, handle = _collect(engine, _ids(loaded, PROMPTS[0]), long)
        with pytest.raises(QueueFull):
            engine.submit(_ids(loaded, PROMPTS[1]), GREEDY, lambda event: None)
        _wait_for(lambda: len(tokens) >= 2)
        handle.cancel()
        assert done.wait(5)
        assert finish[0].reason == "cancelled"
        assert len(tokens) < 100
        assert engine.generate(_ids(loaded, PROMPTS[1]), GREEDY)[1].reason == "length"
    finally:
        engine.stop()


def test_rejects_prompt_longer_than_context(loaded):
    engine = Engine(loaded[0], slots=1, max_seq_len=8)
    with pytest.raises(ValueError):
        engine.submit(list(range(8)), GREEDY, lambda event: None)


# --- constrained decoding (validity is asserted, never words: the grammar guarantees it) -------


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=20)
    country: Literal["FR", "DE", "JP"]


class Person(BaseModel):
    """Objects, nesting ($ref), enums, integers, numbers, bounded strings and arrays,
    optional properties and anyOf (`X | None`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=24)
    age: int = Field(ge=0, le=150)
    height_m: float = Field(ge=0, le=3)
    address: Address
    tags: list[Literal["a", "b", "c"]] = Field(max_length=3)
    nickname: str | None = Field(None, max_length=12)


JSON_PROMPT = "<|im_start|>user\nDescribe a person as JSON.<|im_end|>\n<|im_start|>assistant\n"


def _params(tok, **kwargs) -> SamplingParams:
    """Stopping on EOS, which the grammar allows once the output is complete."""
    return SamplingParams(stop_token_ids=tok.eos_token_ids, **kwargs)


def test_constrained_and_free_sequences_share_a_batch(loaded, engine, constrainer):
    """Constrained rows are valid against the schema (greedy and sampled); a free sequence in
    the same batch gets exactly the tokens it gets alone."""
    tok = loaded[1]
    ids = tok.encode(JSON_PROMPT)
    grammar = json_schema_grammar(Person.model_json_schema())
    free = _params(tok, max_tokens=24, temperature=0)
    alone, _ = engine.generate(ids, free)
    runs = [
        _collect(
            engine, ids, _params(tok, max_tokens=120, temperature=0), constrainer.matcher(grammar)
        ),
        _collect(engine, ids, _params(tok, max_tokens=120, seed=7), constrainer.matcher(grammar)),
        _collect(engine, ids, free),
    ]
    for _, _, done, _ in runs:
        assert done.wait(120)
    for out, finish, _, _ in runs[:2]:
        assert finish[0].reason == "stop", tok.decode(out)
        Person.model_validate_json(tok.decode(out))
    assert runs[2][0] == alone


def test_any_object_and_a_lark_grammar(loaded, engine, constrainer):
    tok = loaded[1]
    ids = tok.encode(JSON_PROMPT)
    out, finish = engine.generate(
        ids,
        _params(tok, max_tokens=60, temperature=0),
        constrainer.matcher(json_schema_grammar(None)),
    )
    # Any object may be unbounded (keys, strings): only its start is certain in 60 tokens.
    text = tok.decode(out)
    assert text.startswith("{") and (
        finish.reason == "length" or isinstance(json.loads(text), dict)
    )
    choice = lark_grammar('start: "yes" | "no"\n')
    out, finish = engine.generate(
        ids, _params(tok, max_tokens=8, seed=1), constrainer.matcher(choice)
    )
    assert tok.decode(out) in ("yes", "no") and finish.reason == "stop"


def test_a_schema_that_does_not_compile_is_a_grammar_error(constrainer):
    with pytest.raises(GrammarError):
        constrainer.matcher(
            json_schema_grammar({"type": "object", "properties": {"a": {"type": "strin"}}})
        )


# --- provider -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider():
    settings = Settings(
        engine_slots=2, max_waiting_requests=1, engine_precision="fp32", _env_file=None
    )
    prov = NativeProvider(settings)
    asyncio.run(prov.load())
    yield prov
    asyncio.run(prov.close())


async def _deltas(provider: NativeProvider, request: GenerationRequest):
    return [d async for d in provider.stream(request)]


def _request(**kwargs) -> GenerationRequest:
    return GenerationRequest(model="smollm2-135m-instruct", temperature=0, **kwargs)


def test_provider_implements_protocol(provider):
    assert isinstance(provider, Provider)
    assert provider.ready and provider.max_concurrency == 2
    assert asyncio.run(provider.models()) == ["smollm2-135m-instruct"]


def test_provider_chat_stream_ends_with_usage(provider):
    messages = (Message("user", "What is the capital of France?"),)
    deltas = asyncio.run(_deltas(provider, _request(messages=messages, max_tokens=64)))
    final = deltas[-1]
    assert final.finish_reason in ("stop", "length") and final.text == ""
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])
    assert final.usage.prompt_tokens == len(provider.prompt_ids(_request(messages=messages)))
    assert 0 < final.usage.completion_tokens <= 64
    assert sum(d.tokens for d in deltas) == final.usage.completion_tokens


def test_provider_stop_string_split_across_tokens(provider):
    request = _request(prompt="def fibonacci(n):", max_tokens=20)
    full = "".join(d.text for d in asyncio.run(_deltas(provider, request)))
    # A stop string made of three of the model's own tokens, whatever it wrote on this CPU.
    tokens, _ = provider._engine.generate(provider.prompt_ids(request), GREEDY)
    stop = provider._tokenizer.decode(tokens[4:7])
    assert len(stop) > 1 and stop in full
    deltas = asyncio.run(_deltas(provider, _request(prompt=request.prompt, max_tokens=20,
                                                    stop=(stop,))))  # fmt: skip
    assert "".join(d.text for d in deltas) == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"


def test_provider_length_and_utf8_safety(provider):
    # Repeated emoji (three tokens each): the model copies the pattern, so its answer is full
    # of characters whose tokens must be held back until they are whole.
    request = _request(prompt="Once upon a time 12345 émigré " + "😀🌟" * 6, max_tokens=10)
    deltas = asyncio.run(_deltas(provider, request))
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage.completion_tokens == 10
    text = "".join(d.text for d in deltas)
    assert any(ord(ch) > 0xFFFF for ch in text), "the test needs emoji in the answer"
    assert all(REPLACEMENT not in d.text for d in deltas)
    tokens, _ = provider._engine.generate(
        provider.prompt_ids(request), SamplingParams(max_tokens=10, temperature=0)
    )
    # All of it, except a character cut in half by max_tokens, which is never sent.
    assert text == provider._tokenizer.decode(tokens).rstrip(REPLACEMENT)


def test_provider_close_cancels_and_full_queue_is_503(provider):
    engine = provider._engine

    async def scenario():
        request = _request(prompt="1, 2, 3, 4, 5, 6, 7,", max_tokens=400)
        streams = [provider.stream(request) for _ in range(3)]  # 2 slots + 1 waiting
        firsts = [asyncio.ensure_future(s.__anext__()) for s in streams]
        await asyncio.wait(firsts[:2])
        await asyncio.to_thread(_wait_for, lambda: engine.stats.waiting == 1, 10)
        with pytest.raises(ProviderError) as excinfo:
            await provider.stream(request).__anext__()
        assert excinfo.value.status_code == 503
        firsts[2].cancel()  # a cancelled task is a client gone, like aclose()
        for s in streams[:2]:
            await s.aclose()
        # cancelled within a step: the slots are free again
        await asyncio.to_thread(_wait_for, lambda: engine.stats.running == 0, 5)
        deltas = await _deltas(provider, _request(prompt="Hi", max_tokens=2))
        assert deltas[-1].finish_reason == "length"

    asyncio.run(scenario())

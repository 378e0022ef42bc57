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

from chatworks.engine import compiled
from chatworks.engine.constraints import (
    Constrainer,
    GrammarError,
    json_schema_grammar,
    lark_grammar,
)
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine, Finish, QueueFull
from chatworks.engine.textstream import REPLACEMENT
from chatworks.model import load_pretrained
from chatworks.providers.base import GenerationRequest, Message, Provider, ProviderError
from chatworks.providers.native import NativeProvider
from chatworks.settings import Settings
from tests.reference import assert_near_greedy, assert_within_rounding

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


def _reference(loaded):
    """Next-token logits of a full forward pass, for `assert_near_greedy`."""
    return lambda ids: loaded[0](torch.tensor([ids]))[0]


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
        assert_near_greedy(_reference(loaded), _ids(loaded, prompt), tokens)


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


# --- chunked prefill and prefix reuse -----------------------------------------------------------

CHAT = [{"role": "system", "content": "You answer questions about geography in one sentence."},
        {"role": "user", "content": "What is the capital of Italy?"}]  # fmt: skip


def _chat_ids(loaded, messages) -> list[int]:
    tok = loaded[1]
    return tok.encode(tok.apply_chat_template(messages, add_generation_prompt=True))


def test_chunked_prefill_equals_one_shot_prefill(loaded):
    """The cache a prompt leaves after prefilling in chunks of 7 holds what one forward over the
    whole prompt leaves, and the next token's logits agree."""
    model = loaded[0]
    ids = _chat_ids(loaded, CHAT)
    caches = [KVCache(model.cfg, 1, torch.float32, 256) for _ in range(2)]
    for cache in caches:
        cache.reserve(1, len(ids))
    with torch.inference_mode():
        whole = model(torch.tensor([ids]), kv=caches[0].views(0, 1), kv_len=len(ids),
                      last_only=True)  # fmt: skip
        for start in range(0, len(ids), 7):
            chunk = ids[start : start + 7]
            positions = torch.arange(start, start + len(chunk))[None]
            chunked = model(torch.tensor([chunk]), positions, kv=caches[1].views(0, 1),
                            kv_len=start + len(chunk), last_only=True)  # fmt: skip
    assert_within_rounding(chunked, whole)  # float32, other matmul shapes: tests/reference.py
    for one, other in zip(caches[0].keys + caches[0].values, caches[1].keys + caches[1].values,
                          strict=True):  # fmt: skip
        assert_within_rounding(one[:, :, : len(ids)], other[:, :, : len(ids)])


def test_prompts_prefilled_in_chunks_and_together_decode_greedily(loaded):
    """A 16-token budget splits the chat prompt into chunks and pads the short prompts (4-12
    tokens) into forwards of several rows; each sequence still gets the reference model's
    greedy continuation."""
    engine = Engine(loaded[0], slots=6, max_waiting=8, prefill_budget=16, prefix_cache_mb=0)
    engine.start()
    try:
        prompts = [_ids(loaded, p) for p in PROMPTS] + [_chat_ids(loaded, CHAT)]
        runs = [_collect(engine, ids, GREEDY) for ids in prompts]
        for (tokens, finish, done, _), ids in zip(runs, prompts, strict=True):
            assert done.wait(120)
            assert finish[0].reason == "length" and finish[0].cached_tokens == 0
            assert_near_greedy(_reference(loaded), ids, tokens)
        assert engine.stats.prefill_tokens == sum(map(len, prompts))
    finally:
        engine.stop()


def test_second_turn_prefills_only_the_new_tokens(loaded):
    """A conversation's second turn reuses the first turn's prompt and answer from the prefix
    cache: only the tokens after them are prefilled, and the answer is still the reference's
    greedy one."""
    tok = loaded[1]
    engine = Engine(loaded[0], slots=2, max_waiting=4).start()
    try:
        params = SamplingParams(max_tokens=24, temperature=0, stop_token_ids=tok.eos_token_ids)
        first = _chat_ids(loaded, CHAT)
        answer, finish = engine.generate(first, params)
        assert finish.cached_tokens == 0
        turn = [*CHAT, {"role": "assistant", "content": tok.decode(answer)},
                {"role": "user", "content": "And of Spain?"}]  # fmt: skip
        second = _chat_ids(loaded, turn)
        before = engine.stats.prefill_tokens
        tokens, finish = engine.generate(second, params)
        # The first turn's prompt at least (its answer too, where re-encoding gives the same ids)
        assert finish.cached_tokens >= len(first)
        assert engine.stats.prefill_tokens - before == len(second) - finish.cached_tokens
        assert engine.stats.prefix_hit_tokens == finish.cached_tokens
        assert_near_greedy(_reference(loaded), second, tokens)
        # A seeded request is computed afresh: the same seed must give the same sample.
        seeded = SamplingParams(max_tokens=4, temperature=1.0, seed=7)
        assert engine.generate(second, seeded)[1].cached_tokens == 0
    finally:
        engine.stop()


def test_running_sequences_share_their_prefix_and_cancelled_prefills_free_slots(loaded):
    """A request arriving while another with the same system prompt decodes copies that prefix
    from it; a long prompt cancelled mid-prefill leaves the slots packed, and the others and
    the next requests are unaffected."""
    engine = Engine(loaded[0], slots=3, max_waiting=4, prefill_budget=16, prefix_cache_mb=0)
    engine.start()
    try:
        decoding = _collect(
            engine, _chat_ids(loaded, CHAT), SamplingParams(max_tokens=64, temperature=0)
        )
        _wait_for(lambda: len(decoding[0]) >= 2)
        long_prompt = _ids(loaded, " ".join(["the history of the printing press"] * 40))
        cancelled = _collect(engine, long_prompt, GREEDY)
        _wait_for(lambda: engine.stats.prefill_tokens >= len(_chat_ids(loaded, CHAT)) + 32)
        cancelled[3].cancel()
        sibling_ids = _chat_ids(loaded, [CHAT[0], {"role": "user", "content": "Name a river."}])
        sibling = _collect(engine, sibling_ids, GREEDY)
        for run in (cancelled, sibling, decoding):
            assert run[2].wait(120)
        assert cancelled[1][0].reason == "cancelled" and len(cancelled[0]) == 0
        assert sibling[1][0].cached_tokens >= len(
            _ids(loaded, "<|im_start|>system\n" + CHAT[0]["content"])
        )
        assert_near_greedy(_reference(loaded), sibling_ids, sibling[0])
        assert_near_greedy(_reference(loaded), _chat_ids(loaded, CHAT), decoding[0])
        _wait_for(lambda: engine.stats.running == 0)
        tokens = engine.generate(long_prompt[:50], GREEDY)[0]
        assert_near_greedy(_reference(loaded), long_prompt[:50], tokens)
    finally:
        engine.stop()


def test_admission_by_kv_cache_memory(loaded):
    """With room for about two sequences' prompt and max_tokens, a third waits until one
    finishes (its memory then serves it), a request that could never fit is refused at once,
    and the cache never outgrows its budget."""
    model = loaded[0]
    bytes_per_position = KVCache(model.cfg, 1, torch.float32, 16).bytes_per_position
    engine = Engine(model, slots=8, max_waiting=8, prefix_cache_mb=0,
                    kv_cache_mb=2 * 61 * bytes_per_position / 2**20)  # fmt: skip
    engine.start()
    try:
        params = SamplingParams(max_tokens=50, temperature=0)
        prompts = [_ids(loaded, p) for p in PROMPTS[:3]]  # 4-12 tokens: each needs <= 62
        runs = [_collect(engine, ids, params) for ids in prompts]
        _wait_for(lambda: len(runs[0][0]) >= 5 and len(runs[1][0]) >= 5)
        assert engine.stats.running == 2 and engine.stats.waiting == 1
        assert len(runs[2][0]) == 0
        assert engine.stats.kv_cache_usage > 0.5
        for (tokens, finish, done, _), ids in zip(runs, prompts, strict=True):
            assert done.wait(120) and finish[0].reason == "length"
            assert_near_greedy(_reference(loaded), ids, tokens)
        assert engine.cache.nbytes <= 2 * 61 * bytes_per_position  # a spare position per row
        with pytest.raises(ValueError, match="KV"):
            engine.submit(prompts[0], SamplingParams(max_tokens=500), lambda event: None)
        _wait_for(lambda: engine.stats.running == 0)
        assert engine.stats.kv_cache_usage == 0
    finally:
        engine.stop()


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


def test_only_the_engines_thread_runs_with_its_threads(loaded):
    """torch hands the last count it was given to every thread on its first torch call. A
    thread started after a 2-thread engine (a guard judging beside a request) got 2 and opened
    a second OpenMP team, which halved 2-thread decode; and an uncompiled engine whose caller
    set the count back before its first step ran on 1. The engine's thread keeps its 2 and a
    later thread gets the caller's 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    engine = Engine(loaded[0], slots=1, threads=2).start()  # not compiled: no torch call yet
    try:
        on_engine: list[int] = []  # `emit` runs on the engine's thread
        done = threading.Event()

        def emit(event) -> None:
            on_engine.append(torch.get_num_threads())
            if isinstance(event, Finish):
                done.set()

        engine.submit(_ids(loaded, "Hello"), SamplingParams(max_tokens=3, temperature=0), emit)
        assert done.wait(60)
        later: list[int] = []

        def judge() -> None:
            torch.ones(8).sum()  # a thread's count is set on its first torch call
            later.append(torch.get_num_threads())

        thread = threading.Thread(target=judge)
        thread.start()
        thread.join()
        assert set(on_engine) == {2} and later == [1]
    finally:
        engine.stop()
        torch.set_num_threads(before)


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


def test_each_refusal_of_the_engine_has_its_own_code(provider):
    """The engine raises typed refusals; the provider names each (never one code for all)."""
    # A KV budget of one megabyte holds ~22 positions of this fp32 model: a request for 100
    # tokens can never fit (never started: submit refuses before the engine's thread sees it).
    small = NativeProvider(Settings(_env_file=None))
    small._engine = Engine(provider._engine.model, slots=1, kv_cache_mb=1)
    small._tokenizer = provider._tokenizer
    cases = [(provider, _request(prompt=""), "empty_prompt"),
             (provider, _request(prompt="word " * 5000, max_tokens=1), "context_length_exceeded"),
             (small, _request(prompt="Hi", max_tokens=100), "request_too_large")]  # fmt: skip
    for served, request, code in cases:
        with pytest.raises(ProviderError) as refused:
            asyncio.run(_deltas(served, request))
        assert (refused.value.status_code, refused.value.code) == (400, code), code


def test_compile_where_it_cannot_run_is_off_by_default_and_an_error_when_forced(monkeypatch):
    monkeypatch.setattr(
        compiled, "unavailable_reason", lambda integer_only=False: "no C++ compiler"
    )
    assert NativeProvider(Settings(_env_file=None))._compile() is False
    forced = NativeProvider(Settings(engine_compile=True, _env_file=None))
    with pytest.raises(ValueError, match=r"CHATWORKS_ENGINE_COMPILE=true, but no C\+\+ compiler"):
        forced._compile()

"""Continuous batching: many requests share each forward pass of the model.

One scheduler thread owns the model and the KV cache. Each step it
1. retires sequences whose client cancelled (their slot is free by the end of the step),
2. admits waiting requests into free slots and prefills them (up to `prefill_budget` prompt
   tokens per step, so running streams keep decoding while new ones arrive),
3. runs one batched decode step over every running sequence, each at its own position, and
4. retires the ones that hit a stop token or their length limit.
Tokens reach requests through a callback called on the scheduler thread; `Engine.stream` turns
that into an asyncio iterator with `loop.call_soon_threadsafe`. Slots and the waiting queue are
bounded: `submit` raises `QueueFull` rather than queueing without limit.

A sequence may carry a grammar matcher (`engine/constraints.py`): its logits are masked to what
the grammar allows before sampling. The masks of a step are computed on a helper thread while
the model runs the forward pass, and only constrained rows are touched, so unconstrained
sequences in the same batch do not wait on them.

Does not cover: text (stop strings, detokenizing) - that is the provider's job - nor chunked
prefill of one prompt across steps, nor prefix caching.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import torch

from chatworks.engine.constraints import Constrainer, Matcher, apply_masks
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.sampling import SamplingParams, make_generator, sample
from chatworks.model.llama import Llama


class QueueFull(Exception):
    """Every slot is busy and the waiting queue is full: the API answers 503 with Retry-After."""


@dataclass(frozen=True)
class Finish:
    reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    # Epoch ns of the phases (0: did not happen), for traces: the engine thread never touches
    # OpenTelemetry, the caller turns these into spans. Measurements, so not part of equality.
    submitted_ns: int = field(default=0, compare=False)
    admitted_ns: int = field(default=0, compare=False)
    first_token_ns: int = field(default=0, compare=False)
    finished_ns: int = field(default=0, compare=False)


Event = int | Finish  # a generated token id, then exactly one Finish
Emit = Callable[[Event], None]


@dataclass(eq=False)
class _Sequence:
    prompt: list[int]
    params: SamplingParams
    emit: Emit
    generator: torch.Generator | None
    matcher: Matcher | None = None  # constrained decoding: the grammar's state
    submitted_at: float = field(default_factory=time.perf_counter)
    submitted_ns: int = field(default_factory=time.time_ns)
    admitted_ns: int = 0
    first_token_ns: int = 0
    slot: int = -1
    length: int = 0  # positions already in the cache
    next_token: int = -1  # sampled, to be fed (and cached) by the next decode step
    generated: int = 0
    cancelled: bool = False


@dataclass
class EngineStats:
    """Counters for /metrics (the telemetry package names and exports them)."""

    running: int = 0
    waiting: int = 0
    steps: int = 0
    last_batch_size: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    queue_seconds: float = 0.0  # summed over admitted requests


class Handle:
    """What `submit` returns: lets the caller cancel its sequence."""

    def __init__(self, engine: Engine, seq: _Sequence):
        self._engine, self._seq = engine, seq

    def cancel(self) -> None:
        self._engine._cancel(self._seq)


class Engine:
    def __init__(
        self,
        model: Llama,
        slots: int = 8,
        max_waiting: int = 64,
        max_seq_len: int | None = None,
        threads: int = 1,
        prefill_budget: int = 512,
        constrainer: Constrainer | None = None,
    ):
        self.model = model
        self.slots, self.max_waiting, self.threads = slots, max_waiting, threads
        self.prefill_budget = prefill_budget
        self.constrainer = constrainer
        self._masker = ThreadPoolExecutor(1, thread_name_prefix="chatworks-masks")
        self.max_seq_len = min(max_seq_len or model.cfg.max_seq_len, model.cfg.max_seq_len)
        dtype = model.embed_tokens.weight.dtype
        self.cache = KVCache(model.cfg, slots, dtype, self.max_seq_len)
        self.stats = EngineStats()
        self._running: list[_Sequence] = []  # index == slot; only the scheduler thread touches it
        self._waiting: deque[_Sequence] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0  # waiting + running, guarded by _cond
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- client side (any thread) --------------------------------------------------------------

    def start(self) -> Engine:
        self._thread = threading.Thread(target=self._loop, name="chatworks-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
        self._masker.shutdown()

    def submit(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        emit: Emit,
        matcher: Matcher | None = None,
    ) -> Handle:
        """`matcher`: from `constrainer.matcher(grammar)`; each sequence needs its own."""
        if not prompt:
            raise ValueError("empty prompt")
        if len(prompt) >= self.max_seq_len:
            raise ValueError(
                f"prompt of {len(prompt)} tokens leaves no room (limit {self.max_seq_len})"
            )
        if matcher is not None and self.constrainer is None:
            raise ValueError("this engine was built without a constrainer")
        seq = _Sequence(list(prompt), params, emit, make_generator(params), matcher)
        with self._cond:
            if self._stopping:
                raise RuntimeError("engine stopped")
            if self._in_flight >= self.slots + self.max_waiting:
                raise QueueFull(f"{self.slots} running and {self.max_waiting} waiting: server busy")
            self._in_flight += 1
            self._waiting.append(seq)
            self._cond.notify()
        return Handle(self, seq)

    def _cancel(self, seq: _Sequence) -> None:
        with self._cond:
            seq.cancelled = True
            self._cond.notify()

    def generate(
        self, prompt: Sequence[int], params: SamplingParams, matcher: Matcher | None = None
    ) -> tuple[list[int], Finish]:
        """Blocking convenience for scripts and tests: all tokens, then how it ended."""
        tokens: list[int] = []
        done = threading.Event()
        finish: list[Finish] = []

        def emit(event: Event) -> None:
            if isinstance(event, Finish):
                finish.append(event)
                done.set()
            else:
                tokens.append(event)

        self.submit(prompt, params, emit, matcher)
        done.wait()
        return tokens, finish[0]

    def stream(
        self, prompt: Sequence[int], params: SamplingParams, matcher: Matcher | None = None
    ) -> AsyncIterator[Event]:
        """Submit now (so `QueueFull` raises here) and return the events as an async iterator.

        Token ids arrive as they are sampled, then the Finish. Closing the iterator (or cancelling
        the task reading it) cancels the sequence. Call from the event loop's thread.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            if not loop.is_closed():  # the reader may be gone before its cancel is seen
                loop.call_soon_threadsafe(queue.put_nowait, event)

        return _drain(queue, self.submit(prompt, params, emit, matcher))

    # --- scheduler thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._stopping or self._waiting or self._running):
                        self._cond.wait()
                    if self._stopping:
                        break
                    cancelled = [s for s in self._waiting if s.cancelled]
                    for seq in cancelled:
                        self._waiting.remove(seq)
                for seq in cancelled:
                    self._finish(seq, "cancelled")
                for seq in [s for s in self._running if s.cancelled]:
                    self._retire(seq, "cancelled")
                for seq in self._admit():
                    self._prefill(seq)
                if self._running:
                    self._decode()
        for seq in [*self._running, *self._waiting]:
            self._finish(seq, "cancelled")

    def _admit(self) -> list[_Sequence]:
        admitted: list[_Sequence] = []
        budget = self.prefill_budget
        with self._cond:
            while self._waiting and len(self._running) + len(admitted) < self.slots:
                if admitted and len(self._waiting[0].prompt) > budget:
                    break  # leave it for the next step, after the running streams advance
                seq = self._waiting.popleft()
                budget -= len(seq.prompt)
                admitted.append(seq)
            self.stats.waiting = len(self._waiting)
            self.stats.running = len(self._running) + len(admitted)
        now, now_ns = time.perf_counter(), time.time_ns()
        for seq in admitted:
            self.stats.queue_seconds += now - seq.submitted_at
            seq.admitted_ns = now_ns
        return admitted

    def _prefill(self, seq: _Sequence) -> None:
        start = time.perf_counter()
        seq.slot = len(self._running)
        self._running.append(seq)
        n = len(seq.prompt)
        self.cache.reserve(n)
        logits = self.model(
            torch.tensor([seq.prompt]),
            torch.arange(n).unsqueeze(0),
            kv=self.cache.views(seq.slot, seq.slot + 1),
            kv_len=n,
            last_only=True,
        )
        seq.length = n
        self.stats.prefill_tokens += n
        self.stats.prefill_seconds += time.perf_counter() - start
        if seq.matcher is not None:
            apply_masks(logits, [0], self._constrainer().masks([seq.matcher]))
        self._accept(seq, logits[0])

    def _decode(self) -> None:
        start = time.perf_counter()
        batch = self._running
        kv_len = max(s.length for s in batch) + 1
        self.cache.reserve(kv_len)
        # The masks depend only on tokens already sampled: compute them during the forward pass.
        rows = [i for i, s in enumerate(batch) if s.matcher is not None]
        masks: Future[torch.Tensor] | None = None
        if rows:
            matchers = [batch[i].matcher for i in rows]
            masks = self._masker.submit(self._constrainer().masks, matchers)
        logits = self.model(
            torch.tensor([[s.next_token] for s in batch]),
            torch.tensor([[s.length] for s in batch]),
            kv=self.cache.views(0, len(batch)),
            kv_len=kv_len,
            last_only=True,
        )
        for seq in batch:
            seq.length += 1
        self.stats.steps += 1
        self.stats.last_batch_size = len(batch)
        self.stats.decode_tokens += len(batch)
        if masks is not None:
            apply_masks(logits, rows, masks.result())
        self.stats.decode_seconds += time.perf_counter() - start
        for seq, row in zip(list(batch), logits, strict=True):
            self._accept(seq, row)

    def _accept(self, seq: _Sequence, logits: torch.Tensor) -> None:
        """Sample, emit, and retire the sequence if this token ends it."""
        if seq.matcher is not None and seq.matcher.is_error():
            # A grammar past a resource limit allows nothing: sampling from all -inf would
            # raise here and stop the whole engine, so this sequence ends instead.
            self._retire(seq, "stop")
            return
        token = sample(logits, seq.params, seq.generator)
        if seq.matcher is not None:
            seq.matcher.consume_token(token)  # allowed by the mask; a failure shows next step
        seq.generated += 1
        if seq.generated == 1:
            seq.first_token_ns = time.time_ns()
        if token in seq.params.stop_token_ids:
            self._retire(seq, "stop")
            return
        self._emit(seq, token)
        seq.next_token = token
        if seq.generated >= seq.params.max_tokens or seq.length + 1 >= self.max_seq_len:
            self._retire(seq, "length")

    def _constrainer(self) -> Constrainer:
        assert self.constrainer is not None, "submit checks it for constrained sequences"
        return self.constrainer

    def _retire(self, seq: _Sequence, reason: Literal["stop", "length", "cancelled"]) -> None:
        """Free the slot, keeping running sequences packed in slots 0..n-1."""
        last = self._running.pop()
        if last is not seq:
            self.cache.move(last.slot, seq.slot, last.length)
            last.slot = seq.slot
            self._running[seq.slot] = last
        self._finish(seq, reason)

    def _finish(self, seq: _Sequence, reason: Literal["stop", "length", "cancelled"]) -> None:
        with self._cond:
            self._in_flight -= 1
            self.stats.running = len(self._running)
        self._emit(seq, Finish(reason, len(seq.prompt), seq.generated, seq.submitted_ns,
                               seq.admitted_ns, seq.first_token_ns, time.time_ns()))  # fmt: skip

    def _emit(self, seq: _Sequence, event: Event) -> None:
        """A failing callback is a client gone: cancel its sequence, keep serving the others."""
        try:
            seq.emit(event)
        except Exception:
            seq.cancelled = True


async def _drain(queue: asyncio.Queue[Event], handle: Handle) -> AsyncIterator[Event]:
    try:
        while True:
            event = await queue.get()
            yield event
            if isinstance(event, Finish):
                return
    finally:
        handle.cancel()  # a no-op if the sequence already finished

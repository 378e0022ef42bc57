"""Continuous batching: many requests share each forward pass of the model.

One scheduler thread owns the model and the KV cache. Each step it
1. retires sequences whose client cancelled (their slot is free by the end of the step),
2. admits waiting requests into free slots, each starting from the longest prefix of its prompt
   already computed: by a sequence still in the cache, or by a finished one kept in the prefix
   cache (`engine/prefix_cache.py`), copied into its slot,
3. prefills one chunk of the waiting prompts: up to `prefill_budget` prompt tokens in one
   forward, several short prompts together, a long one over several steps, so running streams
   never wait more than one chunk for their next token,
4. runs one batched decode step over every decoding sequence, each at its own position, and
5. retires the ones that hit a stop token or their length limit.
Tokens reach requests through a callback called on the scheduler thread; `Engine.stream` turns
that into an asyncio iterator with `loop.call_soon_threadsafe`. Slots and the waiting queue are
bounded: `submit` raises `QueueFull` rather than queueing without limit.

Slots 0..d-1 hold the decoding sequences and d..n-1 the ones still prefilling, so each forward
reads a contiguous slice of the cache: a finished prefill swaps into slot d, a retired sequence's
slot is filled by moving the last one of its zone (and then the zones' boundary).

A sequence may carry a grammar matcher (`engine/constraints.py`): its logits are masked to what
the grammar allows before sampling. The masks of a step are computed on a helper thread while
the model runs the forward pass, and only constrained rows are touched, so unconstrained
sequences in the same batch do not wait on them.

Does not cover: text (stop strings, detokenizing) - that is the provider's job.
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

from chatworks.engine import compiled
from chatworks.engine.constraints import Constrainer, Matcher, apply_masks
from chatworks.engine.kv_cache import KVCache
from chatworks.engine.prefix_cache import PrefixCache, common_prefix
from chatworks.engine.sampling import SamplingParams, make_generator, sample
from chatworks.model.llama import Llama


class QueueFull(Exception):
    """Every slot is busy and the waiting queue is full: the API answers 503 with Retry-After."""


class Unservable(ValueError):
    """A request this engine can never run, however long it waits (the API answers 400)."""


class EmptyPrompt(Unservable):
    """No prompt tokens: nothing to continue from."""


class PromptTooLong(Unservable):
    """The prompt leaves no room for a token in the context window."""


class OverKVBudget(Unservable):
    """The prompt and `max_tokens` need more KV cache than the engine's whole budget."""


@dataclass(frozen=True)
class Finish:
    reason: Literal["stop", "length", "cancelled"]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose keys/values were reused, not computed
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
    cached: int = 0  # of those, copied from an earlier sequence rather than prefilled
    output: list[int] = field(default_factory=list)  # sampled tokens; the last not yet cached
    cancelled: bool = False

    @property
    def prefilling(self) -> bool:
        return self.length < len(self.prompt)

    @property
    def tokens(self) -> list[int]:
        """The token ids of the positions in the cache."""
        return (self.prompt + self.output)[: self.length]


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
    prefix_queried_tokens: int = 0  # prompt tokens of admitted requests
    prefix_hit_tokens: int = 0  # of those, reused from the cache instead of prefilled
    prefix_cache_bytes: int = 0
    kv_cache_usage: float = 0.0  # share of the KV cache budget reserved by admitted sequences


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
        prefix_cache_mb: float = 256,
        kv_cache_mb: float | None = None,
        compile: bool = False,
    ):
        """`slots`: sequences at most in the batch. `kv_cache_mb`: memory for their keys and
        values: a request is admitted when the cache, with it, fits in it for every sequence's
        prompt and max_tokens (None: no limit but `slots`). `prefill_budget`: prompt tokens per
        prefill forward (the chunk size of a long prompt). `prefix_cache_mb`: memory for
        finished sequences' keys and values (0: none; sequences still in the cache are reused
        either way). `compile`: run the decoder blocks compiled (`engine/compiled.py`), compiled
        by `start` before it returns."""
        self.model = model
        self.compile = compile
        self.slots, self.max_waiting, self.threads = slots, max_waiting, threads
        self.prefill_budget = prefill_budget
        self.constrainer = constrainer
        self._masker = ThreadPoolExecutor(1, thread_name_prefix="chatworks-masks")
        self.max_seq_len = min(max_seq_len or model.cfg.max_seq_len, model.cfg.max_seq_len)
        dtype = model.embed_tokens.weight.dtype
        budget = float("inf") if kv_cache_mb is None else kv_cache_mb * 2**20
        self.cache = KVCache(model.cfg, slots, dtype, self.max_seq_len, budget)
        self.prefixes = PrefixCache(int(prefix_cache_mb * 2**20))
        self.stats = EngineStats()
        # Only the scheduler thread touches these. Index == slot: decoding sequences first.
        self._slots: list[_Sequence] = []
        self._decoding = 0  # slots 0.._decoding-1 decode, the rest prefill
        self._waiting: deque[_Sequence] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0  # waiting + running, guarded by _cond
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._start_error: Exception | None = None

    # --- client side (any thread) --------------------------------------------------------------

    def start(self) -> Engine:
        """Start the scheduler thread; with `compile`, return once it has compiled the model.
        Only that thread runs with `threads`: the process's torch thread count is the caller's
        again on return."""
        callers = torch.get_num_threads()
        warmed = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(warmed,), name="chatworks-engine", daemon=True
        )
        self._thread.start()
        warmed.wait()
        # torch hands the last count it was given to every thread on its first torch call:
        # left at `threads`, a guard judging on a new worker thread opened a second OpenMP
        # team, and 2-thread decode fell to half speed for good (docs/log.md).
        torch.set_num_threads(callers)
        if self._start_error is not None:
            raise RuntimeError("the engine could not compile its model") from self._start_error
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
            raise EmptyPrompt("empty prompt")
        if len(prompt) >= self.max_seq_len:
            raise PromptTooLong(
                f"prompt of {len(prompt)} tokens leaves no room (limit {self.max_seq_len})"
            )
        if matcher is not None and self.constrainer is None:
            raise ValueError("this engine was built without a constrainer")
        seq = _Sequence(list(prompt), params, emit, make_generator(params), matcher)
        if not self.cache.fits(1, self._need(seq)):
            raise OverKVBudget(
                f"{len(prompt)} prompt tokens and max_tokens {params.max_tokens} need more KV "
                f"cache than its budget ({int(self.cache.budget_positions)} positions)"
            )
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

    def _loop(self, warmed: threading.Event) -> None:
        # This thread's first torch call gives it the process's count (which `start` sets back
        # to the caller's): made first, so that `threads` sticks here, compiled or not.
        torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            if self.compile:  # here: Inductor builds its C++ loops for this thread count
                compiled.compile_blocks(self.model)
                compiled.warm_up(self.model)
        except Exception as exc:  # handed to `start`, which raises it
            self._start_error = exc
            return
        finally:
            warmed.set()
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._stopping or self._waiting or self._slots):
                        self._cond.wait()
                    if self._stopping:
                        break
                    cancelled = [s for s in self._waiting if s.cancelled]
                    for seq in cancelled:
                        self._waiting.remove(seq)
                for seq in cancelled:
                    self._finish(seq, "cancelled")
                for seq in [s for s in self._slots if s.cancelled]:
                    self._retire(seq, "cancelled")
                for seq in self._admit():
                    self._start_from_prefix(seq)
                if len(self._slots) > self._decoding:
                    self._prefill()
                if self._decoding:
                    self._decode()
        for seq in [*self._slots, *self._waiting]:
            self._finish(seq, "cancelled")

    def _need(self, seq: _Sequence) -> int:
        """Positions `seq` may come to hold: its prompt and max_tokens, within the context."""
        return min(len(seq.prompt) + seq.params.max_tokens, self.max_seq_len)

    def _admit(self) -> list[_Sequence]:
        """Waiting sequences, oldest first, while a slot is free and the cache, sized for every
        admitted sequence's longest possible length, stays within its budget."""
        admitted: list[_Sequence] = []
        with self._cond:
            while self._waiting and len(self._slots) + len(admitted) < self.slots:
                rows, longest = self._reservation([*self._slots, *admitted, self._waiting[0]])
                if not self.cache.fits(rows, longest):
                    break
                admitted.append(self._waiting.popleft())
            self.stats.waiting = len(self._waiting)
            self.stats.running = len(self._slots) + len(admitted)
            self.stats.kv_cache_usage = self._usage([*self._slots, *admitted])
        now, now_ns = time.perf_counter(), time.time_ns()
        for seq in admitted:
            self.stats.queue_seconds += now - seq.submitted_at
            seq.admitted_ns = now_ns
        return admitted

    def _start_from_prefix(self, seq: _Sequence) -> None:
        """Give `seq` the last slot, holding the longest prefix of its prompt already computed:
        by a sequence in the cache, else by one in the prefix cache. At least the prompt's last
        token is left to prefill: its logits give the first sampled token."""
        seq.slot = len(self._slots)
        self._slots.append(seq)
        prompt = torch.tensor(seq.prompt, dtype=torch.long)
        shared, entry, source = 0, None, None
        # A seed promises the same sample for the same request, but reused keys and values
        # differ from recomputed ones in the last bits (other kernels, other shapes), and at
        # temperature > 0 that can move a sample: a seeded prompt is always computed afresh.
        if seq.params.seed is None:
            shared, entry = self.prefixes.longest(prompt)
            for other in self._slots[:-1]:
                computed = torch.tensor(other.tokens, dtype=torch.long)
                if (n := common_prefix(computed, prompt)) > shared:
                    shared, source = n, other
        length = min(shared, len(seq.prompt) - 1)
        if length < self.prefixes.min_tokens:
            length, source, entry = 0, None, None
        self._reserve(length)
        if source is not None:
            self.cache.move(source.slot, seq.slot, length)
        elif entry is not None:
            self.cache.load(seq.slot, entry.kv, length)
        seq.length = seq.cached = length
        self.stats.prefix_queried_tokens += len(seq.prompt)
        self.stats.prefix_hit_tokens += length

    def _prefill(self) -> None:
        """One forward over a chunk of each of the oldest prefilling sequences that fit in the
        budget (adjacent slots; rows padded to the longest chunk); those whose prompt is now
        complete start decoding with their first sampled token."""
        start = time.perf_counter()
        first = min(self._slots[self._decoding :], key=lambda s: s.submitted_at).slot
        batch: list[_Sequence] = []
        width = 0
        for seq in self._slots[first:]:
            chunk = min(len(seq.prompt) - seq.length, self.prefill_budget)
            if batch and (len(batch) + 1) * max(width, chunk) > self.prefill_budget:
                break
            batch.append(seq)
            width = max(width, chunk)
        chunks = [seq.prompt[seq.length : seq.length + width] for seq in batch]
        # Padding follows each row's real tokens, at positions no real token attends to: its
        # own next ones (overwritten by its next chunk) or, past those, one scratch position
        # beyond every row's real ones (within each row's prompt, so within the budget).
        scratch = max(seq.length + len(chunk) for seq, chunk in zip(batch, chunks, strict=True))
        self._reserve(scratch + 1)
        tokens = torch.tensor([chunk + [0] * (width - len(chunk)) for chunk in chunks])
        positions = torch.tensor(
            [[min(seq.length + i, scratch) for i in range(width)] for seq in batch]
        )
        logits = self.model(
            tokens,
            positions,
            kv=self.cache.views(first, first + len(batch)),
            kv_len=scratch,
            logits_at=torch.tensor([len(chunk) - 1 for chunk in chunks]),
        )
        done = []  # rows of `logits` whose prompt is now complete
        for i, (seq, chunk) in enumerate(zip(batch, chunks, strict=True)):
            seq.length += len(chunk)
            self.stats.prefill_tokens += len(chunk)
            if not seq.prefilling:
                done.append(i)
        self.stats.prefill_seconds += time.perf_counter() - start
        for i in done:  # into the decoding zone, in slot order
            self._swap(batch[i], self._slots[self._decoding])
            self._decoding += 1
        rows = [i for i in done if batch[i].matcher is not None]
        if rows:
            apply_masks(logits, rows, self._constrainer().masks([batch[i].matcher for i in rows]))
        for i in done:
            self._accept(batch[i], logits[i])

    def _decode(self) -> None:
        start = time.perf_counter()
        batch = self._slots[: self._decoding]
        kv_len = max(s.length for s in batch) + 1
        self._reserve(kv_len)
        # The masks depend only on tokens already sampled: compute them during the forward pass.
        rows = [i for i, s in enumerate(batch) if s.matcher is not None]
        masks: Future[torch.Tensor] | None = None
        if rows:
            matchers = [batch[i].matcher for i in rows]
            masks = self._masker.submit(self._constrainer().masks, matchers)
        logits = self.model(
            torch.tensor([[s.output[-1]] for s in batch]),
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
        for seq, row in zip(batch, logits, strict=True):
            self._accept(seq, row)

    def _reserve(self, length: int) -> None:
        """Room in the cache for every slot in use, with `length` positions or more."""
        self.cache.reserve(len(self._slots), max([length, *(s.length for s in self._slots)]))

    def _reservation(self, sequences: list[_Sequence]) -> tuple[int, int]:
        """Rows and length the cache needs for `sequences` to reach their longest."""
        return len(sequences), max((self._need(s) for s in sequences), default=0)

    def _usage(self, sequences: list[_Sequence]) -> float:
        """The share of the cache budget (or of the slots, without one) they reserve."""
        rows, longest = self._reservation(sequences)
        budget = self.cache.budget_positions
        if budget == float("inf"):
            return rows / self.slots
        return self.cache.allocated(rows, longest) / budget

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
        seq.output.append(token)
        if len(seq.output) == 1:
            seq.first_token_ns = time.time_ns()
        if token in seq.params.stop_token_ids:
            self._retire(seq, "stop")
            return
        self._emit(seq, token)
        if len(seq.output) >= seq.params.max_tokens or seq.length + 1 >= self.max_seq_len:
            self._retire(seq, "length")

    def _constrainer(self) -> Constrainer:
        assert self.constrainer is not None, "submit checks it for constrained sequences"
        return self.constrainer

    def _retire(self, seq: _Sequence, reason: Literal["stop", "length", "cancelled"]) -> None:
        """Free the slot, keeping both zones packed: the last sequence of the zone fills it,
        and a decoding slot freed at the zones' boundary goes to the last prefilling one."""
        self.prefixes.add(seq.tokens, seq.length * self.cache.bytes_per_position,
                          lambda: self.cache.export(seq.slot, seq.length))  # fmt: skip
        self.stats.prefix_cache_bytes = self.prefixes.nbytes
        if seq.slot < self._decoding:
            self._decoding -= 1
            self._fill(seq.slot, self._decoding)
            self._fill(self._decoding, len(self._slots) - 1)
        else:
            self._fill(seq.slot, len(self._slots) - 1)
        self._slots.pop()
        self._finish(seq, reason)

    def _fill(self, hole: int, last: int) -> None:
        """Move the sequence in slot `last` into slot `hole` (its sequence is leaving)."""
        if hole != last:
            moved = self._slots[last]
            self.cache.move(last, hole, moved.length)
            moved.slot = hole
            self._slots[hole], self._slots[last] = moved, self._slots[hole]

    def _swap(self, a: _Sequence, b: _Sequence) -> None:
        if a is not b:
            self.cache.swap(a.slot, b.slot, max(a.length, b.length))
            a.slot, b.slot = b.slot, a.slot
            self._slots[a.slot], self._slots[b.slot] = a, b

    def _finish(self, seq: _Sequence, reason: Literal["stop", "length", "cancelled"]) -> None:
        with self._cond:
            self._in_flight -= 1
            self.stats.running = len(self._slots)
            self.stats.kv_cache_usage = self._usage(self._slots)
        self._emit(seq, Finish(reason, len(seq.prompt), len(seq.output), seq.cached,
                               seq.submitted_ns, seq.admitted_ns, seq.first_token_ns,
                               time.time_ns()))  # fmt: skip

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

"""Model probes: what the served model should say, scored as a pass rate over a set.

A single answer of a small model is a knife edge: one flipped token (another CPU's kernels, a
quantized weight) changes "Paris" into "the city of Paris is..." or into nonsense. So model
quality is never a unit test here. Each probe states what an acceptable answer contains, the
runner asks them all greedily, and a gate checks the *rate* against a threshold set below what
was measured, so a flipped token moves the rate by one probe while a real regression (broken
weights, a wrong chat template, a grounding prompt that stops working) fails it.

One JSON object per line:

    {"id": "capital-france", "kind": "chat", "prompt": "What is the capital of France?",
     "any_of": ["Paris"]}
    {"id": "zephyr-code", "kind": "grounded", "prompt": "What is the code word?",
     "any_of": ["BLUEBIRD"], "cites": "zephyr.md"}

A probe passes when the answer contains one of `any_of` (as whole words, ignoring case; empty
means anything), none of `none_of`, cites a document whose source ends with `cites`, and is
refused exactly when `refuses` says so. Grounded probes are asked over the probe documents (a folder
of files, ingested into one collection by the caller), the way `chatworks ask` answers.
Not covered: golden-set retrieval and answer metrics (`runner.py`).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chatworks.evals.datasets import DATA_DIR, DatasetError
from chatworks.evals.metrics import contains_answer, mean
from chatworks.evals.runner import EvalReport, ask_all
from chatworks.providers.base import GenerationRequest, Message, Provider
from chatworks.rag.answer import Grounded, answer_greedily
from chatworks.rag.library import Library

MODEL_PROBES = DATA_DIR / "model_probes.jsonl"
PROBE_DOCS = DATA_DIR / "probe_docs"


@dataclass(frozen=True)
class Probe:
    id: str
    kind: Literal["chat", "grounded"]
    prompt: str
    any_of: tuple[str, ...] = ()
    none_of: tuple[str, ...] = ()
    cites: str | None = None
    refuses: bool | None = None
    # Offered in the chat UI's empty state: a prompt the default model answers well. Chosen by
    # its answers under both kernel sets (docs/evals.md, "Model probes"), not by taste.
    suggest: bool = False


@dataclass(frozen=True)
class ProbeResult:
    id: str
    kind: str
    answer: str
    passed: bool
    failures: list[str] = field(default_factory=list)  # why it did not pass


def load_probes(path: Path = MODEL_PROBES) -> list[Probe]:
    probes: list[Probe] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            probe = Probe(
                id=raw["id"], kind=raw["kind"], prompt=raw["prompt"],
                any_of=tuple(raw.get("any_of", ())), none_of=tuple(raw.get("none_of", ())),
                cites=raw.get("cites"), refuses=raw.get("refuses"),
                suggest=bool(raw.get("suggest", False)),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}:{number}: {exc!r}") from exc
        if probe.kind not in ("chat", "grounded"):
            raise DatasetError(f"{path}:{number}: kind must be chat or grounded")
        if probe.kind == "chat" and (probe.cites or probe.refuses is not None):
            raise DatasetError(f"{path}:{number}: cites/refuses need a grounded probe")
        probes.append(probe)
    return probes


@functools.cache
def suggested_prompts(path: Path = MODEL_PROBES) -> tuple[str, ...]:
    """The chat probes flagged `suggest`: what the UI offers before the first message (read
    once: the file ships with the package)."""
    return tuple(p.prompt for p in load_probes(path) if p.suggest and p.kind == "chat")


def judge(probe: Probe, answer: str, grounded: Grounded | None) -> ProbeResult:
    failures = []
    if probe.any_of and not any(contains_answer(answer, want) for want in probe.any_of):
        failures.append(f"none of {list(probe.any_of)} in the answer")
    failures += [f"{bad!r} in the answer" for bad in probe.none_of if contains_answer(answer, bad)]
    if grounded is not None:
        if probe.refuses is not None and grounded.refused != probe.refuses:
            failures.append("refused" if grounded.refused else "answered instead of refusing")
        cited = [c.source for c in grounded.citations]
        if probe.cites and not any(s.endswith(probe.cites) for s in cited):
            failures.append(f"{probe.cites} not cited (cited: {cited})")
    return ProbeResult(probe.id, probe.kind, answer, not failures, failures)


async def _ask(
    probe: Probe, provider: Provider, model: str, library: Library | None, collection: str,
    max_tokens: int,
) -> ProbeResult:  # fmt: skip
    if probe.kind == "chat":
        request = GenerationRequest(
            model=model, messages=(Message("user", probe.prompt),), max_tokens=max_tokens,
            temperature=0,
        )  # fmt: skip
        text = "".join([delta.text async for delta in provider.stream(request)])
        return judge(probe, text.strip(), None)
    assert library is not None, "grounded probes need a library with the probe documents"
    prepared = await asyncio.to_thread(library.prepare, probe.prompt, collection)
    grounded = await answer_greedily(provider, model, probe.prompt, prepared, max_tokens)
    return judge(probe, grounded.answer, grounded)


def run_probes(
    probes: Sequence[Probe],
    provider: Provider,
    *,
    model: str,
    library: Library | None = None,
    collection: str = "probes",
    max_tokens: int = 48,
    dataset: str = "",
) -> EvalReport:
    """Every probe, greedy, through `ask_all` (concurrently; loads and closes the provider)."""

    def ask(probe: Probe) -> Awaitable[ProbeResult]:
        return _ask(probe, provider, model, library, collection, max_tokens)

    results = ask_all(provider, probes, ask)
    summary: dict[str, float | None] = {"pass_rate": mean(float(r.passed) for r in results)}
    for kind in ("chat", "grounded"):
        summary[f"{kind}_pass_rate"] = mean(float(r.passed) for r in results if r.kind == kind)
    return EvalReport(
        "probes", dataset, collection, {"model": model, "max_tokens": max_tokens,
                                        "probes": len(probes)}, summary, list(results),
    )  # fmt: skip

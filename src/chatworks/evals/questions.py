"""The questions of a suite run: each asked through an `Asker` (in process or over HTTP),
concurrently, scored, and appended to a JSONL file as it finishes, so an interrupted run
resumes where it stopped.

Per question it keeps what came back (answer, citations with quotes, refusal, latency, tokens)
and its scores: containment and token F1 of the gold answer, citation precision/recall against
the gold documents, whether a citation quotes a gold passage, groundedness, refusal, and an
optional judge verdict. `summarize` averages them into the run's metrics. Not covered: asking
(`ask.py`, `client.py`), retrieval metrics (`runner.run_retrieval_eval`), files (`report.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chatworks.evals import metrics
from chatworks.evals.ask import Asked, Asker, Cited
from chatworks.evals.datasets import EvalItem, passage_matches
from chatworks.evals.runner import Progress, gold_cited

# A judge takes the item and what came back, and says correct (True), not (False) or cannot
# tell (None).
Judge = Callable[[EvalItem, Asked], Awaitable[bool | None]]


@dataclass(frozen=True)
class QuestionRecord:
    id: str
    question: str
    answerable: bool
    gold_answer: str | None
    gold: list[dict[str, str]]  # the gold passages: source, snippet
    answer: str
    citations: list[Cited]
    refused: bool
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    invalid_citations: int | None
    error: str | None
    contains_answer: bool | None  # answerable questions with a gold answer only
    token_f1: float | None
    citation_precision: float | None
    citation_recall: float | None
    gold_passage_cited: bool | None  # a citation's source and quote hold a gold passage
    groundedness: float | None  # answered questions only
    judge: bool | None = None
    failures: list[str] = field(default_factory=list)  # why it counts as wrong, if it does
    passages: list[Cited] = field(default_factory=list)  # what the model was given, if known

    @classmethod
    def from_json(cls, raw: dict) -> QuestionRecord:
        return cls(**{**raw, "citations": [Cited(**c) for c in raw["citations"]],
                      "passages": [Cited(**c) for c in raw.get("passages", [])]})  # fmt: skip


def score(item: EvalItem, asked: Asked, verdict: bool | None = None) -> QuestionRecord:
    answered = not asked.refused and asked.error is None
    quotes = [c.quote for c in asked.citations]
    cited = gold_cited(list(dict.fromkeys(c.source for c in asked.citations)), item)
    contained = f1 = precision = recall = passage = None
    if item.answerable and item.answer is not None:  # a retrieval-only question has no answer
        contained = answered and metrics.contains_answer(asked.answer, item.answer)
        f1 = metrics.token_f1(asked.answer, item.answer) if answered else 0.0
    if item.answerable:
        precision = metrics.citation_precision(cited, item.gold_sources)
        recall = metrics.citation_recall(cited, item.gold_sources)
        passage = any(passage_matches(g, c.source, c.quote) for g in item.gold
                      for c in asked.citations)  # fmt: skip
    grounded = metrics.groundedness(asked.answer, quotes) if answered else None
    failures = []
    if asked.error:
        failures.append(f"the request failed: {asked.error}")
    elif not item.answerable and not asked.refused:
        failures.append("answered a question the documents do not answer")
    elif item.answerable and asked.refused:
        failures.append("refused a question the documents answer")
    elif item.answerable:
        if contained is False:
            failures.append(f"the gold answer {item.answer!r} is not in the answer")
        if not precision:
            failures.append("no citation names a gold document")
    if grounded is not None and grounded < 0.5:
        failures.append(f"groundedness {grounded:.2f}: most claims are not in the cited quotes")
    if asked.invalid_citations:
        failures.append(f"{asked.invalid_citations} citation(s) name a passage not given")
    if verdict is False:
        failures.append("the judge says the answer is not correct and supported")
    return QuestionRecord(
        item.id, item.question, item.answerable, item.answer,
        [{"source": g.source, "snippet": g.snippet} for g in item.gold], asked.answer,
        list(asked.citations), asked.refused, asked.latency_s, asked.prompt_tokens,
        asked.completion_tokens, asked.invalid_citations, asked.error, contained, f1, precision,
        recall, passage, grounded, verdict, failures, list(asked.passages),
    )  # fmt: skip


def summarize(records: Sequence[QuestionRecord]) -> dict[str, float | None]:
    """The run's metrics. Rates over answerable questions count refusals and errors as misses;
    groundedness averages over answered questions; latency and tokens over all of them."""
    answerable = [r for r in records if r.answerable]
    ok = [r for r in records if r.error is None]
    summary: dict[str, float | None] = {
        "containment": metrics.mean(
            float(r.contains_answer) for r in answerable if r.contains_answer is not None
        ),
        "token_f1": metrics.mean(r.token_f1 for r in answerable),
        "citation_precision": metrics.mean(r.citation_precision for r in answerable),
        "citation_recall": metrics.mean(r.citation_recall for r in answerable),
        "gold_passage_cited": metrics.mean(float(bool(r.gold_passage_cited)) for r in answerable),
        "refusal_accuracy": metrics.refusal_accuracy(
            [r.refused for r in records if not r.answerable]
        ),
        "false_refusal_rate": metrics.mean(float(r.refused) for r in answerable),
        "groundedness": metrics.mean(r.groundedness for r in records),
        "latency_p50_s": metrics.percentile([r.latency_s for r in ok], 50),
        "latency_p95_s": metrics.percentile([r.latency_s for r in ok], 95),
        "prompt_tokens_mean": metrics.mean(float(r.prompt_tokens) for r in ok),
        "completion_tokens_mean": metrics.mean(float(r.completion_tokens) for r in ok),
        "errors": float(sum(r.error is not None for r in records)),
    }
    if any(r.invalid_citations is not None for r in records):
        summary["invalid_citations"] = float(sum(r.invalid_citations or 0 for r in records))
    if any(r.judge is not None for r in records):
        summary["judge_correct"] = metrics.mean(
            None if r.judge is None else float(r.judge) for r in records
        )
    return summary


def read_records(path: Path) -> list[QuestionRecord]:
    """The records of a (possibly interrupted) run; a torn last line is dropped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(QuestionRecord.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError):
            continue  # the line being written when the run was stopped
    return records


def run_questions(
    items: Sequence[EvalItem],
    asker: Asker,
    results: Path,
    *,
    concurrency: int = 4,
    resume: bool = False,
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> list[QuestionRecord]:
    """Asks every item not already in `results` (with `resume`; otherwise the file starts
    empty), at most `concurrency` at a time, appending each record as it is scored. Returns
    the records in item order."""
    results.parent.mkdir(parents=True, exist_ok=True)
    wanted = {i.id for i in items}
    done = {r.id: r for r in read_records(results) if r.id in wanted} if resume else {}
    # Rewritten rather than appended to: a line torn by the stop would otherwise swallow the
    # first record appended after it.
    results.write_text("".join(json.dumps(asdict(r)) + "\n" for r in done.values()),
                       encoding="utf-8")  # fmt: skip
    todo = [i for i in items if i.id not in done]
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(item: EvalItem, out) -> None:
        async with limit:
            asked = await asker.ask(item.question)
            verdict = await judge(item, asked) if judge and asked.error is None else None
        record = score(item, asked, verdict)
        done[item.id] = record
        # One write per line, flushed: a stopped run loses at most the questions in flight.
        out.write(json.dumps(asdict(record)) + "\n")
        out.flush()
        if progress:
            progress(len(done), len(items))

    async def run_all() -> None:
        await asker.start()
        try:
            with results.open("a", encoding="utf-8") as out:
                await asyncio.gather(*(one(item, out) for item in todo))
        finally:
            await asker.close()

    if progress:
        progress(len(done), len(items))
    if todo:
        asyncio.run(run_all())
    return [done[i.id] for i in items]

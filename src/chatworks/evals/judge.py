"""An optional LLM judge: asks a provider whether an answer is correct and supported, and how
often its verdicts agree with a human's.

The judge sees the question, the gold answer (or that the documents do not answer it), the
answer and the quotes it cites, and must reply YES or NO. Any Provider can judge (the native
default model, an OpenAI-compatible upstream, the scripted one in tests). A judge is only as
good as its agreement with people, so `judge_labels.jsonl` holds human-labelled cases and
`agreement` measures accuracy and Cohen's kappa on them. Not covered: the lexical metrics a
run computes anyway (`metrics.py`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chatworks.evals.datasets import DATA_DIR, DatasetError
from chatworks.providers.base import GenerationRequest, Message, Provider

JUDGE_LABELS = DATA_DIR / "judge_labels.jsonl"

SYSTEM = (
    "You grade answers. Reply with one word: YES if the answer is correct and supported by "
    "the quotes, NO otherwise."
)
_VERDICT = re.compile(r"\b(yes|no|correct|incorrect)\b", re.IGNORECASE)


@dataclass(frozen=True)
class JudgeCase:
    """One human-labelled case: would a careful reader accept this answer?"""

    id: str
    question: str
    gold_answer: str | None  # None: the documents do not answer the question
    answer: str
    quotes: tuple[str, ...]
    correct: bool  # the human label


def judge_messages(
    question: str, gold: str | None, answer: str, quotes: Sequence[str]
) -> tuple[Message, ...]:
    expected = gold if gold is not None else (
        "(none: the documents do not answer this, so only an answer saying it does not know "
        "is correct)"
    )  # fmt: skip
    cited = "\n".join(f"- {q.strip()[:600]}" for q in quotes) or "- (nothing cited)"
    user = (
        f"Question: {question}\nExpected answer: {expected}\nQuotes cited:\n{cited}\n"
        f"Answer to grade: {answer.strip()[:1200]}\n\n"
        "Is the answer correct and supported by the quotes? Reply YES or NO."
    )
    return (Message("system", SYSTEM), Message("user", user))


def parse_verdict(text: str) -> bool | None:
    """The first YES/NO (or correct/incorrect) word in the reply, any case and punctuation;
    None when there is none. Small models ramble, so the first verdict word counts."""
    found = _VERDICT.search(text)
    if found is None:
        return None
    return found.group(1).lower() in ("yes", "correct")


async def judge_answer(
    provider: Provider, model: str, question: str, gold: str | None, answer: str,
    quotes: Sequence[str], max_tokens: int = 8,
) -> tuple[bool | None, str]:  # fmt: skip
    """(verdict, the judge's raw reply), greedy. The provider must be loaded."""
    request = GenerationRequest(
        model=model, messages=judge_messages(question, gold, answer, quotes),
        max_tokens=max_tokens, temperature=0,
    )  # fmt: skip
    text = "".join([delta.text async for delta in provider.stream(request)])
    return parse_verdict(text), text


def provider_judge(provider: Provider, model: str):
    """A `questions.Judge` asking `provider`, which is loaded on first use if the run has not
    loaded it already (in process, the judge is the provider that answers)."""
    loading = asyncio.Lock()

    async def judge(item, asked) -> bool | None:
        async with loading:
            if not provider.ready:
                await provider.load()
        quotes = [c.quote for c in asked.citations]
        verdict, _ = await judge_answer(provider, model, item.question, item.answer,
                                        asked.answer, quotes)  # fmt: skip
        return verdict

    return judge


def load_judge_cases(path: Path = JUDGE_LABELS) -> list[JudgeCase]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            case = JudgeCase(raw["id"], raw["question"], raw["gold_answer"], raw["answer"],
                             tuple(raw["quotes"]), raw["correct"])  # fmt: skip
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"{path}:{number}: {e!r}") from None
        if not isinstance(case.correct, bool):
            raise DatasetError(f"{path}:{number}: correct must be true or false")
        cases.append(case)
    return cases


@dataclass(frozen=True)
class Agreement:
    cases: int
    accuracy: float  # share of cases where the judge says what the human said
    kappa: float  # Cohen's kappa: agreement beyond what chance would give (0 = chance)
    unparsed: int  # replies with no verdict, counted as NO


def agreement(human: Sequence[bool], judged: Sequence[bool | None]) -> Agreement:
    """How often the judge agrees with the human labels. A reply without a verdict counts
    as NO: a judge that cannot answer must not score by abstaining."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    verdicts = [bool(v) for v in judged]
    accuracy = float(accuracy_score(human, verdicts))
    # Both raters giving one and the same label throughout agree fully, but chance would too,
    # so kappa is 0/0 (scikit-learn warns and returns nan): call it full agreement.
    one_label = len(set(human) | set(verdicts)) == 1
    kappa = 1.0 if one_label else float(cohen_kappa_score(human, verdicts))
    return Agreement(len(human), accuracy, kappa, sum(v is None for v in judged))

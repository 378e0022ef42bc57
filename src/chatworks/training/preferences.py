"""On-policy preference pairs: the model's own answers, ranked by checks code can run.

For each task (`tasks.py`: grounded questions over given passages, instructions with a
checkable form) the model samples a few answers; each answer is scored by the task's checks
(quotes the known span, cites its passage, cites nothing else, refuses exactly when the
passages lack the answer, keeps the asked form). The chosen answer is a fully correct sample;
when no sample is, the task's reference answer stands in (marked `chosen_from: reference`, an
off-policy pair). The rejected one is the lowest-scoring sample. Tasks whose samples all score
the same as the chosen one give no pair. This is the "critique, preference pairs, DPO,
evaluate" loop with the critique done by code rather than by a judge model: SmolLM2-135M as a
judge agreed with people at kappa -0.25 (docs/evals.md).
Does not cover: human or LLM-judged preferences, or the DPO run itself (`dpo.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chatworks.engine.sampling import SamplingParams
from chatworks.model.llama import Llama
from chatworks.model.tokenizer import Tokenizer
from chatworks.training.dpo import Pair
from chatworks.training.rollout import generate
from chatworks.training.tasks import Task


def sample_answers(
    model: Llama, tokenizer: Tokenizer, tasks: Sequence[Task], samples: int,
    temperature: float, max_tokens: int, seed: int, rows: int = 32,
) -> list[list[str]]:  # fmt: skip
    """`samples` answers per task, each seeded by (seed, task, sample) so reruns repeat."""
    prompts, params = [], []
    for t, task in enumerate(tasks):
        ids = tokenizer.encode(tokenizer.apply_chat_template(task.messages, True))
        for s in range(samples):
            prompts.append(ids)
            params.append(SamplingParams(
                max_tokens=max_tokens, temperature=temperature, top_p=0.95,
                seed=(seed * 1_000_003 + t) * 1_009 + s, stop_token_ids=tokenizer.eos_token_ids,
            ))  # fmt: skip
    answers = [tokenizer.decode(a) for a in generate(model, prompts, params, rows)]
    return [answers[t * samples : (t + 1) * samples] for t in range(len(tasks))]


def rank(task: Task, answers: Sequence[str]) -> tuple[Pair, dict[str, Any]] | None:
    """The pair for one task, or None when its answers give no preference."""
    scores = [task.score(a) for a in answers]
    correct = [a for a in answers if task.correct(a)]
    if correct:
        chosen, source, chosen_score = correct[0], "sample", 1.0
    elif task.reference:
        chosen, source, chosen_score = task.reference, "reference", 1.0
    else:
        return None
    worst = min(range(len(answers)), key=scores.__getitem__)
    if scores[worst] >= chosen_score:
        return None
    info = {"kind": task.kind, "chosen_from": source, "rejected_score": scores[worst],
            "samples_correct": len(correct), "samples": len(answers)}  # fmt: skip
    return Pair(task.messages, chosen, answers[worst]), info


def build_pairs(
    model: Llama, tokenizer: Tokenizer, tasks: Sequence[Task], samples: int = 4,
    temperature: float = 0.8, max_tokens: int = 64, seed: int = 0,
    log: Callable[[str], None] = print,
) -> tuple[list[Pair], list[dict[str, Any]]]:  # fmt: skip
    answers = sample_answers(model, tokenizer, tasks, samples, temperature, max_tokens, seed)
    pairs, infos = [], []
    for task, task_answers in zip(tasks, answers, strict=True):
        ranked = rank(task, task_answers)
        if ranked is not None:
            pairs.append(ranked[0])
            infos.append(ranked[1])
    on_policy = sum(i["chosen_from"] == "sample" for i in infos)
    log(f"pairs: {len(pairs)} from {len(tasks)} tasks ({on_policy} with a sampled chosen answer)")
    return pairs, infos

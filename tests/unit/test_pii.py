"""PII recognizers: each kind is found in generated identities, checksums reject near misses,
ordinary text (dates, versions, ids, hashes) is left alone, and redaction leaves no value."""

from __future__ import annotations

import uuid

import pytest
from faker import Faker

from chatworks.security import pii

# Sentences for the tests; bench/moderation.py has its own, written separately.
TEMPLATES = {
    pii.EMAIL: ("You can write to {} for the invoice.", "email"),
    pii.PHONE: ("Call me on {} after six.", "phone_number"),
    pii.CARD: ("The card number is {} and it expires soon.", "credit_card_number"),
    pii.IBAN: ("Wire it to {} please.", "iban"),
    pii.SSN: ("SSN {} is on the form.", "ssn"),
    pii.IP: ("The request came from {} yesterday.", "ipv4"),
}


@pytest.mark.parametrize("locale", ["en_US", "en_GB", "de_DE", "fr_FR"])
@pytest.mark.parametrize("kind", list(TEMPLATES))
def test_generated_values_are_found_and_redacted(locale: str, kind: str) -> None:
    if kind == pii.SSN and locale != "en_US":
        pytest.skip("US social security numbers only")
    fake = Faker(locale)
    fake.seed_instance(7)
    template, provider = TEMPLATES[kind]
    for _ in range(25):
        value = getattr(fake, provider)()
        text = template.format(value)
        assert [(s.kind, s.text) for s in pii.find(text)] == [(kind, value)], text
        redacted = pii.redact(text)
        assert value not in redacted and f"[{kind}]" in redacted


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8t",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "cw-" + "Zq8_x1Yv3Lm0Pw7Ks2Tr9Hb4Nd6Fj5Gc",
        "xoxb-1234567890-abcdefghij",
        "Tm9wZSwgbm90IGEgcmVhbCBzZWNyZXQ6IDEyMzQ1Njc4OQ",  # high entropy, no known prefix
        "2001:db8:85a3::8a2e:370:7334",
    ],
)
def test_secrets_and_ipv6_are_found(secret: str) -> None:
    spans = pii.find(f"here: {secret} (keep it safe)")
    assert [s.text for s in spans] == [secret]


@pytest.mark.parametrize(
    "text",
    [
        "Released on 2024-01-02, version 3.11.4, build 20240102.",
        "Order 1234567890 shipped; invoice 4111111111111112 is not a valid card.",
        "Account DE89370400440532013001 has a wrong check digit.",
        "Version 300.1.2.3 and 999.999.999.999 are not addresses.",
        "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "See /usr/share/doc/python3.11/html/library/functions.html for details.",
        "The meeting is at 10:30 on 12.03.2024 in room 4.12.",
        "pip install torch==2.13.0 and numpy>=1.26",
        "a_very_long_identifier_name_in_snake_case_for_tests",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert pii.find(text) == []


def test_ids_the_service_writes_are_never_pii() -> None:
    # 2,000 of each form, twenty to a line (blank-separated, as alone): one NER call per line.
    for _ in range(100):
        line = " ".join(f(uuid.uuid4()) for _ in range(20) for f in (lambda u: u.hex, str))
        assert pii.find(line) == [], line


def test_checksums() -> None:
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.iban_ok("GB82 WEST 1234 5698 7654 32") and not pii.iban_ok("GB82WEST12345698765433")


def test_spans_do_not_overlap_and_redaction_keeps_the_rest() -> None:
    text = "Mail a.b@example.org or call +44 20 7946 0958; card 4111 1111 1111 1111."
    assert pii.redact(text) == "Mail [EMAIL] or call [PHONE]; card [CARD]."

"""Names and postal addresses (spaCy's small NER plus the rules around it, security/pii_ner.py
and pii_places.py): names the model mislabels, names glued by a hyphen or a dot, address
shapes of several countries, and organisations and dates that must keep their label.
Sentences written here, not taken from bench/moderation.py's templates or faker."""

from __future__ import annotations

import pytest

from chatworks.security import pii


def kinds_of(text: str) -> dict[str, str]:
    return {s.text: s.kind for s in pii.find(text)}


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Please forward the minutes to Twan Guit before noon.", "Twan Guit"),
        ("The lease was signed by Geneviève-Margaud Didier yesterday.", "Geneviève-Margaud Didier"),
        ("Ask Univ.Prof. Guido Pohl about the grant.", "Univ.Prof. Guido Pohl"),
        ("Reminder from Klara Szczerek: the parcel is late.", "Klara Szczerek"),
        ("Could you add pan Marcel Drobny to the list?", "pan Marcel Drobny"),
    ],
)
def test_names_the_small_model_mislabels_are_redacted_whole(text: str, name: str) -> None:
    redacted = pii.redact(text)
    assert not any(word in redacted for word in name.replace("-", " ").split()), redacted
    assert "[PERSON]" in redacted


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("Deliver it to C. de Leonardo Gil 251, Zaragoza, 50001 tomorrow.",
         "C. de Leonardo Gil 251, Zaragoza, 50001"),
        ("Post it to Flat 9, Brady Roads, Perrymouth, AL1 3TP please.",
         "Flat 9, Brady Roads, Perrymouth, AL1 3TP"),
        ("We moved to Louiseboulevard 178, 1205CE Bergen op Zoom in May.",
         "Louiseboulevard 178, 1205CE Bergen op Zoom"),
        ("Her office is at Alte Poststraße 5, 70173 Stuttgart now.",
         "Alte Poststraße 5, 70173 Stuttgart"),
    ],
)  # fmt: skip
def test_addresses_are_redacted_whole_and_nothing_after_them(text: str, address: str) -> None:
    assert kinds_of(text).get(address) == pii.LOCATION, kinds_of(text)
    assert pii.redact(text) == text.replace(address, "[LOCATION]")


def test_a_town_does_not_swallow_the_next_word() -> None:
    # "la" of "last" once read as a town's particle ("Bergen la...").
    text = "She moved to Hauptstraße 5, 10115 Berlin last month."
    assert pii.redact(text) == "She moved to [LOCATION] last month."


def test_never_issued_ssn_shapes_are_ids_and_issued_ones_ssns() -> None:
    assert kinds_of("The export held 000-12-3456 and 923-71-2034.") == {
        "000-12-3456": pii.ID, "923-71-2034": pii.ID}  # fmt: skip
    assert kinds_of("The export held 123-45-6789.") == {"123-45-6789": pii.SSN}


@pytest.mark.parametrize(
    "text",
    [
        "The International Monetary Fund met on Wednesday.",
        "British Airways cancelled the flight to Oslo.",
        "The Champions League final is in June.",
    ],
)
def test_organisations_and_dates_keep_their_label(text: str) -> None:
    assert pii.PERSON not in kinds_of(text).values(), kinds_of(text)

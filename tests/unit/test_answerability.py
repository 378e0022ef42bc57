"""The answerability check: feature arithmetic by hand, the fitted threshold rule, the bundled
model file, and, on a real SQLite index with the real MiniLM embedder, the calibrated floor and
which words the collection lacks count against an answer (topic words, not paraphrase words)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from chatworks.rag.answerability import (
    MODEL_PATH,
    AnswerabilityModel,
    Features,
    features,
    fit,
    question_terms,
    topic_weights,
)
from chatworks.rag.library import Library
from chatworks.rag.retrieve import Retrieved
from chatworks.rag.types import Chunk, Hit
from chatworks.settings import Settings


def window(text: str, score: float) -> Retrieved:
    chunk = Chunk(id="1", document_id="d", collection="c", ordinal=0, text=text, start=0,
                  end=len(text))  # fmt: skip
    return Retrieved(Hit(chunk=chunk, score=0.5, title="t", source="s"), score)


def test_features_weigh_question_words_by_their_rarity_in_the_collection() -> None:
    # 10 chunks: "lunch" is in 1, "office" in 9, "parking" in none.
    counts = (10, {"lunch": 1, "office": 9, "parking": 0})
    idf = {w: math.log(11 / (n + 0.5)) for w, n in counts[1].items()}
    total = sum(idf.values())
    found = features(
        "lunch office parking?", 0.6, [window("Lunch at the office.", 0.7), window("x", 0.1)],
        floor=0.25, term_counts=counts,
    )  # fmt: skip
    assert found.similarity_margin == pytest.approx(0.35)
    assert found.window_margin == pytest.approx(0.45)
    assert found.window_coverage == pytest.approx((idf["lunch"] + idf["office"]) / total)
    assert found.unknown_share == pytest.approx(idf["parking"] / total)
    assert found.context_coverage == pytest.approx(found.window_coverage)


def test_unknown_words_count_by_their_topic_weight() -> None:
    counts = (10, {"lunch": 1, "roughly": 0, "parking": 0, "gym": 0})
    idf = {w: math.log(11 / (n + 0.5)) for w, n in counts[1].items()}
    total = sum(idf.values())
    topic = {"roughly": 0.0, "parking": 0.5}  # "gym" is not given: it counts in full
    found = features("q", 0.6, [window("Lunch.", 0.7)], floor=0.25, term_counts=counts,
                     topic=topic)  # fmt: skip
    assert found.unknown_share == pytest.approx((0.5 * idf["parking"] + idf["gym"]) / total)
    # The coverage features do not depend on it.
    plain = features("q", 0.6, [window("Lunch.", 0.7)], floor=0.25, term_counts=counts)
    assert plain.window_coverage == found.window_coverage
    assert plain.unknown_share == pytest.approx(
        (idf["roughly"] + idf["parking"] + idf["gym"]) / total
    )


def test_question_terms_drop_stop_words() -> None:
    assert question_terms("What is the dress code of the office?") == ["code", "dress", "office"]


def test_fit_threshold_refuses_at_most_the_allowed_share_of_answerable_questions() -> None:
    good = [Features(0.3 + i / 100, 0.4, 0.8, 0.9, 0.0) for i in range(20)]
    bad = [Features(0.0 + i / 100, 0.05, 0.1, 0.2, 0.6) for i in range(20)]
    samples, labels = good + bad, [True] * 20 + [False] * 20
    for allowed in (0.0, 0.1):
        model = fit(samples, labels, max_false_refusals=allowed)
        refused = sum(not model.answerable(s) for s in good)
        assert refused <= allowed * 20
    assert sum(not model.answerable(s) for s in bad) >= 18  # and it does separate them


def test_the_bundled_model_loads_and_orders_clear_cases() -> None:
    model = AnswerabilityModel.load(MODEL_PATH)
    assert set(model.weights) == {f for f in Features.__dataclass_fields__}
    on_topic = Features(0.45, 0.8, 0.9, 1.0, 0.0)
    off_topic = Features(0.02, 0.1, 0.0, 0.1, 0.8)
    assert model.answerable(on_topic) and not model.answerable(off_topic)


def test_model_round_trips_through_its_file(tmp_path: Path) -> None:
    model = AnswerabilityModel({f: 0.5 for f in Features.__dataclass_fields__}, -1.0, 0.4, "x")
    model.save(tmp_path / "m.json")
    assert AnswerabilityModel.load(tmp_path / "m.json") == model


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    library = Library(Settings(data_dir=tmp_path_factory.mktemp("answerability")))
    handbook = (
        "# Zephyr handbook\n\n## Lunch\n\nLunch in the Zephyr office is served at noon on the "
        "third floor.\n\n## Access\n\nThe code word of the Zephyr project is BLUEBIRD-42.\n"
    )
    library.ingest(handbook.encode(), "zephyr.md", "handbook")
    return library


def test_floor_is_calibrated_per_collection_and_cached(library: Library) -> None:
    floor = library.relevance_floor("handbook")
    assert 0.0 < floor < 0.5  # everyday questions are far from a two-section handbook
    assert library.relevance_floor("handbook") == floor
    fixed = Library(library.settings.model_copy(update={"rag_min_similarity": 0.4}))
    assert fixed.relevance_floor("handbook") == 0.4


def test_questions_the_documents_do_not_answer_are_refused(library: Library) -> None:
    assert library.prepare("How do I tune a guitar to drop D?", "handbook").sources == []  # floor
    answered = library.prepare("When is lunch served in the Zephyr office?", "handbook")
    assert answered.sources and "noon" in answered.answer.answer
    # On topic, above the floor, but nothing in the handbook says it (probability 0.09 against
    # a threshold of 0.26 when written): the answerability check refuses it ...
    unanswerable = "Is there bicycle parking at the Zephyr office?"
    refused = library.prepare(unanswerable, "handbook")
    assert refused.sources == [] and refused.answer.refused
    # ... and without the check the best window is quoted anyway.
    unchecked = Library(library.settings.model_copy(update={"rag_answerability": False}))
    assert unchecked.prepare(unanswerable, "handbook").sources


def test_topic_weights_count_what_the_question_is_about(library: Library) -> None:
    embedder = library.context.embedder
    # A common word in a purpose clause carries none of the topic; a service the question asks
    # about carries most of it; a name (mixed case, or capitalised after the first word) all.
    keys = topic_weights("How do I turn on API keys so strangers cannot use my server?",
                         ["strangers", "turn"], embedder)  # fmt: skip
    assert keys == {"strangers": 0.0, "turn": 0.0}
    cost = topic_weights("How much does a chatworks subscription cost?", ["subscription", "does"],
                         embedder)  # fmt: skip
    assert cost["subscription"] > 0.5 and cost["does"] == 0.0
    assert topic_weights("Is there an iPhone app?", ["iphone"], embedder) == {"iphone": 1.0}
    assert topic_weights("Tell me about Grafana", ["grafana"], embedder) == {"grafana": 1.0}
    assert topic_weights("anything", [], embedder) == {}


def test_paraphrase_words_the_collection_lacks_do_not_count_but_topic_words_do(
    library: Library,
) -> None:
    # "time" and "usually" (and "roughly") occur nowhere in the handbook, and weigh nothing: the
    # paraphrases are answered from the lunch section like the handbook's own wording.
    for paraphrase in ("What time do they usually serve lunch at the Zephyr office?",
                       "When is lunch served in the Zephyr office, roughly?"):  # fmt: skip
        examined = library.examine(paraphrase, "handbook")
        assert examined.features is not None and examined.features.unknown_share == 0.0
        answered = library.prepare(paraphrase, "handbook")
        assert answered.sources and "noon" in answered.answer.answer
    # A gym is what the question is about, and the handbook never mentions one: it still counts,
    # and the question is refused.
    gym = library.examine("Is there a gym in the Zephyr office?", "handbook")
    assert gym.features is not None and gym.features.unknown_share > 0.5
    assert library.prepare("Is there a gym in the Zephyr office?", "handbook").sources == []

"""`POST /v1/classify` on a real server: models registered by the lab (a text one and a
tabular one) served by name, alias and version, with probabilities; errors in OpenAI's
shape; a key's model list, the metrics and the trace span like every other route."""

from __future__ import annotations

import httpx
import pytest

from chatworks.lab.data import load_csv
from chatworks.lab.samples import write_sample
from chatworks.lab.train import TrainOptions, train
from tests.e2e.conftest import ADMIN_KEY, create_key, secured_env
from tests.servers import start_server
from tests.unit.test_lab import topic_frame

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    store = root / "mlruns"
    topic_frame().to_csv(root / "topics.csv", index=False)
    write_sample("penguins", root / "penguins.csv")
    for name, target, method in (("topics", "label", "tfidf-logreg"),
                                 ("penguins", "species", "linear")):  # fmt: skip
        options = TrainOptions(methods=[method], folds=2, register_as=name, store=store)
        train(load_csv(root / f"{name}.csv", target), root / name, options, "test")
    (root / "data").mkdir()
    env = secured_env(root / "data", CHATWORKS_LAB_STORE=str(store))
    server = start_server("lab", env)
    yield server
    server.stop()


def classify(server, body: dict, key: str = ADMIN_KEY) -> httpx.Response:
    return httpx.post(f"{server.api_url}/classify", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip


def test_text_and_records_get_labels_with_probabilities(lab_server):
    r = classify(lab_server, {"model": "topics", "input": "the striker scored a goal for the team"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "topics" and body["version"] == "1" and body["method"] == "tfidf-logreg"
    (result,) = body["data"]
    assert result["label"] == "sport" and set(result["probabilities"]) == {"money", "sport", "tech"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["score"] == max(result["probabilities"].values())
    bird = {"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0,
            "flipper_length_mm": 218, "body_mass_g": 4950, "sex": "male", "year": 2008}  # fmt: skip
    many = classify(lab_server, {"model": "penguins@champion", "input": [bird, bird]})
    assert many.status_code == 200, many.text
    assert [d["index"] for d in many.json()["data"]] == [0, 1]
    assert many.json()["data"][0]["label"] == "Gentoo"
    assert classify(lab_server, {"model": "penguins@1", "input": [bird]}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "nope", "input": "x"}, 404, "model_not_found"),
        ({"model": "topics@7", "input": "x"}, 404, "model_not_found"),
        ({"model": "penguins", "input": "a string for a table"}, 400, "invalid_input"),
        ({"model": "topics", "input": []}, 400, None),
        ({"model": "topics", "input": "x" * 40_000}, 413, "input_too_long"),
    ],
)
def test_errors_are_openai_shaped(lab_server, body, status, code):
    r = classify(lab_server, body)
    assert r.status_code == status, r.text
    assert "message" in r.json()["error"]
    if code:
        assert r.json()["error"]["code"] == code


def test_a_key_limited_to_other_models_is_refused(lab_server):
    _, key = create_key(lab_server, name="only-topics", scopes=["chat"], models=["topics"])
    allowed = classify(lab_server, {"model": "topics", "input": "cloud software"}, key)
    assert allowed.status_code == 200
    assert classify(lab_server, {"model": "penguins", "input": [{}]}, key).status_code == 403


def test_metrics_count_predictions_by_model_and_label(lab_server):
    classify(lab_server, {"model": "topics", "input": ["bank shares profit", "chip code robot"]})
    text = httpx.get(f"{lab_server.base_url}/metrics").text
    assert 'chatworks_classify_predictions_total{label="money",model="topics"}' in text
    assert 'chatworks_classify_seconds_count{model="topics"}' in text

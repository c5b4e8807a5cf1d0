"""lite.plan: what the workflow builds for a config, and the config checks the schema can't make."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lite.plan import ConfigError, Pair, Plan, check_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_passes(config):
    check_config(config)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["models"]["tiny8"].update(checkpoints=[2, 4, 6, 9]), "models.tiny8.checkpoints"),
        (lambda c: c["models"]["tiny8"].update(checkpoints=[4, 2, 8]), "strictly ascending"),
        (lambda c: c["models"]["tiny8"]["thresholds"]["paper"].update({7: 0.9}), "thresholds.paper.7"),
        (lambda c: c["models"]["tiny8"]["thresholds"]["paper"].update({8: 0.9}), "thresholds.paper.8"),
        (lambda c: c["generation"]["decoders"].append("fixed-L5"), "fixed-L5"),
        (lambda c: c["models"]["tiny10"].update(tunings=["it"]), "models.tiny10.tunings"),
        (lambda c: c["data"]["eval"].update(calibration={"source": "synthetic"}), "data.eval.calibration"),
        (
            lambda c: c["models"]["tiny8"]["thresholds"].pop("aggressive"),
            "models.tiny8.thresholds.aggressive",
        ),
        (lambda c: c["data"]["eval"]["koala"].update(source="koala"), "data.eval.koala: koala has no gold"),
    ],
)
def test_bad_config_names_the_key(config, edit, message):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_config(bad)


def test_main_model_decoders_and_pairs(config):
    plan = Plan(config)
    assert plan.main == "tiny8" and plan.second == "tiny10"
    assert plan.decoders("tiny8", "it") == ["final", "fixed-L2", "fixed-L4", "fixed-L6"]
    lite_decoders = plan.decoders("tiny8", "lite")
    assert lite_decoders[0] == "final" and "dynamic-calibrated" in lite_decoders
    assert len(lite_decoders) == len(set(lite_decoders))
    # the second model only generates what fig1 and table3 need
    assert plan.decoders("tiny10", "lite") == ["final", "dynamic-calibrated"]
    assert plan.decoders("tiny8", "lite_weighted") == []
    pairs = plan.pairs("tiny8")
    assert Pair("it.final", "lite.final") in pairs
    assert Pair("it.final", "it.fixed-L2") in pairs
    assert all(p.a.endswith(".final") for p in pairs)


def test_fig5_needs_traces_only(config):
    plan = Plan(config)
    inputs = plan.artefact_inputs("fig5")
    assert inputs and all("/analysis/" in path and path.endswith("alignment.csv") for path in inputs)
    assert {path.split("/")[3] for path in inputs} == {"it", "lite"}


def test_artefacts_follow_the_configured_tunings(config):
    config["models"]["tiny8"]["tunings"] = ["lite"]
    del config["models"]["tiny10"]
    plan = Plan(config)
    artefacts = plan.artefacts()
    for needs_it in ("fig3", "fig4", "fig5", "fig11", "fig13", "table3"):
        assert needs_it not in artefacts
    assert "fig1" in artefacts and "table1" in artefacts
    with pytest.raises(ConfigError, match="unknown artefact"):
        plan.artefact_inputs("fig2")

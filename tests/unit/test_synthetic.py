"""The synthetic instruction set: determinism, gold answers checked independently, held-out splits."""

from __future__ import annotations

import collections
import json
import re
import statistics

import pytest

from lite import cli, synthetic, world
from lite.datasets import read_eval_records, validate_eval_record, validate_train_record
from lite.io import read_json, read_jsonl
from lite.synthetic import (
    CAPITALS,
    EVAL_SETS,
    FAMILIES,
    OPPOSITES,
    SEQUENCES,
    WORDS,
    SyntheticSpec,
    bucket_of,
    make_eval,
    make_train,
    overlap,
    prompt_key,
)

NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5}
# Families with large prompt spaces; the lookup families (capital, after, opposite) have only a
# few hundred prompts each, so held-out sets of hundreds must repeat some of theirs.
COPY_FAMILIES = ("count", "repeat", "reverse", "span", "extreme", "shift")


def solve(family: str, instruction: str, text_input: str) -> str:
    """An independent solver: reads the task back from the prompt text alone."""
    # the data is the input, or what follows the colon ("Add 1 to every number: 3 7"), or the instruction
    data = text_input if text_input else instruction.rpartition(":")[2]
    words = [w for w in re.findall(r"[a-z]+", data) if w in WORDS]
    numbers = [int(n) for n in re.findall(r"\d+", data)]
    lowered = instruction.lower()
    if family == "count":
        return str(len(words))
    if family == "repeat":
        (k,) = [int(t) if t.isdigit() else NUMBER_WORDS[t] for t in re.findall(r"\d+|[a-z]+", lowered)
                if t.isdigit() or t in NUMBER_WORDS]  # fmt: skip
        (word,) = words
        return " ".join([word] * k)
    if family == "reverse":
        return " ".join(reversed(words))
    if family == "span":
        first, last = numbers
        step = 1 if last >= first else -1
        return " ".join(str(n) for n in range(first, last + step, step))
    if family == "extreme":
        wants_max = any(w in lowered for w in ("largest", "biggest", "maximum", "highest"))
        return str(max(numbers) if wants_max else min(numbers))
    if family == "shift":
        step = 1 if any(w in lowered for w in ("add", "increase", "plus")) else -1
        return " ".join(str(n + step) for n in numbers)
    if family == "cycle":
        k = int(re.search(r"\d+", instruction)[0])
        first = text_input or re.search(r"(?:with|at|from) (\w+)", instruction)[1]
        kind, (items, _) = next((kind, seq) for kind, seq in SEQUENCES.items() if first in seq[0])
        listed = " ".join(items[(items.index(first) + i) % len(items)] for i in range(k))
        return f"The {k} {kind}s from {first} are {listed}."
    if family.startswith("country_"):
        return _solve_world(family, f"{instruction} {text_input}")
    # the lookup families name their subject last in the instruction, or as the whole input
    subject = text_input or re.search(r"(?:of|after|follows|follow) (.+?)[?.]$", instruction)[1]
    if family == "capital":
        return {country: city for tier in CAPITALS for country, city in tier}[subject]
    if family == "opposite":
        return {a: b for tier in OPPOSITES for pair in tier for a, b in (pair, pair[::-1])}[subject]
    if family == "after":
        counts = [int(t) if t.isdigit() else NUMBER_WORDS[t] for t in re.findall(r"\d+|[a-z]+", lowered)
                  if t.isdigit() or t in NUMBER_WORDS]  # fmt: skip
        k = counts[0] if counts else 1
        items, wraps = next(seq for seq in SEQUENCES.values() if subject in seq[0])
        start = items.index(subject)
        assert wraps or start + k < len(items)
        return " ".join(items[(start + i) % len(items)] for i in range(1, k + 1))
    raise AssertionError(family)


_WORLD = world.make_world()
_CAPITAL = dict(zip(_WORLD.countries, _WORLD.capitals, strict=True))
_LANGUAGE = {x: _WORLD.languages[_WORLD.language_of[i]] for i, x in enumerate(_WORLD.countries)}
_EAST = {x: _WORLD.countries[_WORLD.east_of[i]] for i, x in enumerate(_WORLD.countries)}


def _solve_world(family: str, text: str) -> str:
    """The answer from the world's tables and the countries the prompt names."""
    names = [w for w in re.findall(r"[A-Z][a-z]+", text) if w in _CAPITAL]
    x = names[0]
    if family == "country_capital":
        return f"The capital of {x} is {_CAPITAL[x]}."
    if family == "country_language":
        return f"People in {x} speak {_LANGUAGE[x]}."
    if family == "country_east":
        return f"East of {x} lies {_EAST[x]}."
    if family == "country_two_hop":
        return f"It is {_CAPITAL[_EAST[x]]}, the capital of {_EAST[x]}."
    if family == "country_profile":
        return (
            f"{x} is a country whose capital is {_CAPITAL[x]}. People there speak {_LANGUAGE[x]}. "
            f"East of {x} lies {_EAST[x]}."
        )
    a, b, c = names
    return f"The capitals are {_CAPITAL[a]} ({a}), {_CAPITAL[b]} ({b}) and {_CAPITAL[c]} ({c})."


@pytest.mark.parametrize("name", list(EVAL_SETS))
def test_gold_answers_are_right(name):
    records = make_eval(name, 300, seed=3)
    assert len(records) == 300
    for record in records:
        validate_eval_record(record)
        gold = solve(record["category"], record["instruction"], record["input"])
        assert record["reference"] == gold, record


def test_train_records_are_alpaca_and_solvable():
    records = make_train(600, seed=5)
    assert len(records) == 600
    for record in records:
        validate_train_record(record)
        assert set(record) == {"instruction", "input", "output"}
        # the family is not stored in train records: exactly the families whose solver agrees are candidates
        assert any(record["output"] == _try_solve(f, record) for f in FAMILIES), record


def _try_solve(family, record):
    try:
        return solve(family, record["instruction"], record["input"])
    except (ValueError, KeyError, TypeError, StopIteration, AssertionError):
        return None  # this family's solver cannot read the prompt


def test_deterministic_per_seed():
    assert make_train(300, seed=1) == make_train(300, seed=1)
    assert make_train(300, seed=1) != make_train(300, seed=2)
    assert make_eval("koala", 50, seed=1) == make_eval("koala", 50, seed=1)
    assert make_eval("koala", 50, seed=1) != make_eval("koala", 50, seed=2)
    # different sets with the same seed are different draws
    vicuna = [(r["instruction"], r["input"]) for r in make_eval("vicuna", 50, seed=1)]
    koala = [(r["instruction"], r["input"]) for r in make_eval("koala", 50, seed=1)]
    assert vicuna != koala


def test_held_out_prompts_never_in_train():
    train = make_train(6000, seed=0)
    assert all(bucket_of(r["instruction"], r["input"]) == "train" for r in train)
    calibration = make_eval("calibration", 200, seed=9)
    for name in EVAL_SETS:
        records = make_eval(name, 200, seed=7)
        assert overlap(train, records) == 0.0
        expected = "calib" if name == "calibration" else "eval"
        assert all(bucket_of(r["instruction"], r["input"]) == expected for r in records)
        if name != "calibration":
            assert overlap(calibration, records) == 0.0
        # distinct prompts within a set, where the families' prompt spaces allow it
        distinct = make_eval(name, 200, seed=7, families=COPY_FAMILIES)
        assert len({prompt_key(r["instruction"], r["input"]) for r in distinct}) == len(distinct)


def test_overlap_counts_verbatim_prompts():
    held_out = [
        {"instruction": "a", "input": ""},
        {"instruction": "b", "input": "x"},
        {"instruction": "b", "input": ""},
        {"instruction": "c", "input": ""},
    ]
    train = [
        {"instruction": "a", "input": "", "output": "1"},
        {"instruction": "b", "input": "x", "output": "2"},
    ]
    assert overlap(train, held_out) == 0.5
    assert overlap(train, []) == 0.0


def test_families_balanced_and_phrasings_varied():
    # the calibration split asks every family; the eval sets each ask their own (next test)
    records = make_eval("calibration", 600, seed=0)
    counts = collections.Counter(r["category"] for r in records)
    assert set(counts) == set(FAMILIES)
    assert max(counts.values()) - min(counts.values()) <= 1
    train = make_train(3000, seed=0)
    assert sum(1 for r in train if r["input"]) / len(train) == pytest.approx(0.3, abs=0.04)
    for family in FAMILIES:
        # replace the data by placeholders to recover the template; >= 4 phrasings per family and form
        names = [*_CAPITAL, *_CAPITAL.values()]
        shapes = {
            re.sub(
                r"\b(\d+|" + "|".join([*WORDS, *names]) + r"|two|three|four|five)\b", "_", r["instruction"]
            )
            for r in records
            if r["category"] == family
        }
        # the world's questions have 3-5 phrasings each, the older families more
        assert len(shapes) >= (3 if family.startswith("country_") else 6), (family, shapes)


def test_eval_sets_ask_their_own_categories():
    categories = {name: {r["category"] for r in make_eval(name, 100, seed=0)} for name in EVAL_SETS}
    for name, role in EVAL_SETS.items():
        assert categories[name] == set(role.categories or FAMILIES)
    assert categories["koala"] != categories["wizardlm"]
    # a set whose categories are none of the configured families falls back to all of them
    assert {r["category"] for r in make_eval("wizardlm", 20, seed=0, families=["count", "repeat"])} == {
        "count",
        "repeat",
    }


def test_roles_shift_difficulty_and_input_share():
    def answer_length(name):
        records = make_eval(name, 600, seed=0, families=COPY_FAMILIES)
        return statistics.mean(len(r["reference"].split()) for r in records)

    assert answer_length("wizardlm") > answer_length("vicuna") > answer_length("koala")
    with_input = {
        name: sum(bool(r["input"]) for r in make_eval(name, 300, seed=0, families=COPY_FAMILIES)) / 300
        for name in EVAL_SETS
    }
    assert with_input["selfinstruct"] > 0.7 > 0.3 > with_input["vicuna"]


def test_answers_are_short_and_mostly_multi_token():
    records = make_eval("vicuna", 600, seed=0, families=COPY_FAMILIES)
    lengths = [len(r["reference"].split()) for r in records]
    assert max(lengths) <= 6
    # besides the end of sequence, most answers have more than one word to predict
    assert sum(n > 1 for n in lengths) / len(lengths) > 0.6


def test_spec_validation_names_the_field():
    with pytest.raises(ValueError, match=r"SyntheticSpec.families: unknown family 'sort'"):
        SyntheticSpec(families=("count", "sort"))
    with pytest.raises(ValueError, match=r"SyntheticSpec.families: empty"):
        SyntheticSpec(families=())
    with pytest.raises(ValueError, match=r"SyntheticSpec.families: duplicate"):
        SyntheticSpec(families=("count", "count"))
    with pytest.raises(ValueError, match=r"SyntheticSpec.sizes\['train'\]: expected an integer >= 1"):
        SyntheticSpec(sizes={"train": 0})
    with pytest.raises(ValueError, match=r"SyntheticSpec.sizes: unknown split 'test'"):
        SyntheticSpec(sizes={"test": 5})
    with pytest.raises(ValueError, match=r"SyntheticSpec.seed"):
        SyntheticSpec(seed=-1)
    with pytest.raises(ValueError, match="unknown synthetic eval set 'dolly'"):
        make_eval("dolly", 5, seed=0)
    spec = SyntheticSpec(families=["count", "span"], sizes={"train": 40, "koala": 10}, seed=4)
    assert spec.families == ("count", "span")
    assert spec.make("train") == make_train(40, 4, ["count", "span"])
    assert {r["category"] for r in spec.make("koala")} == {"count", "span"}
    json.dumps(synthetic.describe())


def test_prepare_commands_write_records_and_config(tmp_path):
    train = tmp_path / "data" / "train.jsonl"
    assert (
        cli.main(["prepare-train", "--source", "synthetic", "--n", "120", "--seed", "0", "--out", str(train)])
        == 0
    )
    assert read_jsonl(train) == make_train(120, 0)
    config = read_json(str(train) + ".config.json")
    assert config["n"] == 120 and config["seed"] == 0 and config["records"] == 120
    assert config["families"] == list(FAMILIES)

    out = tmp_path / "data" / "eval" / "wizardlm.jsonl"
    argv = ["prepare-eval", "--source", "synthetic", "--name", "wizardlm", "--n", "30", "--seed", "1"]
    assert cli.main([*argv, "--families", "repeat,reverse", "--out", str(out)]) == 0
    records = read_eval_records(out)
    assert records == make_eval("wizardlm", 30, 1, ["repeat", "reverse"])
    assert read_json(str(out) + ".config.json")["categories"] == {"repeat": 15, "reverse": 15}


def test_prepare_eval_synthetic_needs_a_known_name(tmp_path):
    from lite.io import InputError

    with pytest.raises(InputError, match="needs --name, one of vicuna"):
        cli.main(
            ["prepare-eval", "--source", "synthetic", "--name", "extra", "--out", str(tmp_path / "x.jsonl")]
        )
    with pytest.raises(InputError, match="unknown family 'sort'"):
        cli.main(
            [
                "prepare-train",
                "--source",
                "synthetic",
                "--families",
                "sort",
                "--out",
                str(tmp_path / "t.jsonl"),
            ]
        )
    assert not list(tmp_path.iterdir())

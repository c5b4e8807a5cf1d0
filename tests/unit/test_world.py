"""The synthetic world, its pretraining corpus and the tasks that ask about it."""

from __future__ import annotations

import collections
import random
import re

import pytest

from lite import cli, world
from lite.data import CorpusDataset, read_corpus_texts
from lite.io import InputError, read_json, read_jsonl, write_jsonl
from lite.synthetic import EVAL_SETS, make_eval, make_train


def test_the_world_is_seeded_and_consistent():
    first, again = world.make_world(), world.make_world()
    assert first == again
    other = world.make_world(seed=1)
    assert other.countries != first.countries
    n = len(first.countries)
    # every name is distinct across countries, capitals and languages
    names = [*first.countries, *first.capitals, *first.languages]
    assert len(set(names)) == len(names)
    # east_of is one cycle through all countries: a permutation without fixed points
    assert sorted(first.east_of) == list(range(n))
    assert all(first.east_of[c] != c for c in range(n))
    seen, c = set(), 0
    while c not in seen:
        seen.add(c)
        c = first.east_of[c]
    assert len(seen) == n
    # a third of the countries is held out of tuning, in every popularity band
    held_out = set(range(n)) - first.tuned
    assert len(held_out) == len(range(2, n, 3))
    for low, high in world.LEVEL_RANKS:
        assert held_out & set(range(low, high))


def test_the_corpus_states_true_facts_with_popular_countries_more_often():
    w = world.make_world()
    rows = world.make_corpus(2000, seed=0)
    assert rows == world.make_corpus(2000, seed=0)
    assert rows != world.make_corpus(2000, seed=1)
    capital_of = dict(zip(w.countries, w.capitals, strict=True))
    mentions: collections.Counter = collections.Counter()
    for row in rows:
        for country, city in re.findall(r"The capital of (\w+) is (\w+)\.", row["text"]):
            assert capital_of[country] == city
            mentions[w.countries.index(country)] += 1
        for city, country in re.findall(r"(\w+) is the capital of (\w+)\.", row["text"]):
            assert capital_of[country] == city
    top = sum(mentions[c] for c in range(10))
    bottom = sum(mentions[c] for c in range(len(w.countries) - 10, len(w.countries)))
    assert top > 8 * max(bottom, 1)  # Zipf: the 10 most popular against the 10 rarest
    with pytest.raises(ValueError, match="corpus n"):
        world.make_corpus(0, seed=0)


def _countries(w, records) -> set[int]:
    return {
        c
        for r in records
        for c, name in enumerate(w.countries)
        if re.search(rf"\b{name}\b", r["instruction"] + " " + r["input"])
    }


def test_tuning_asks_only_about_tuned_countries_and_held_out_sets_about_the_rest():
    w = world.make_world()
    families = list(world.WORLD_TASKS)
    assert _countries(w, make_train(3000, seed=0, families=families)) <= w.tuned
    asked = set()
    for name in ("vicuna", "koala", "wizardlm", "selfinstruct", "calibration"):
        records = make_eval(name, 60, seed=1, families=families)
        countries = _countries(w, records)
        assert countries and not countries & w.tuned, name
        asked |= countries
        if EVAL_SETS[name].categories:  # each set asks its own categories
            assert {r["category"] for r in records} <= set(EVAL_SETS[name].categories)
    # every popularity band is asked about
    for low, high in world.LEVEL_RANKS:
        assert asked & set(range(low, high))


def test_answers_are_the_world_s_facts():
    w = world.make_world()
    rng = random.Random(3)
    for _ in range(50):
        instruction, text_input, output = world.two_hop_task(rng, 2, False, False, w)
        (country,) = re.findall(r"east of (\w+)\?", instruction) or re.findall(
            r"east of (\w+)\.", instruction
        )
        east = w.east_of[w.countries.index(country)]
        assert output == f"It is {w.capitals[east]}, the capital of {w.countries[east]}."
        instruction, text_input, output = world.profile_task(rng, 0, True, False, w)
        c = w.countries.index(text_input)
        assert w.capitals[c] in output and w.languages[w.language_of[c]] in output
        assert c < world.LEVEL_RANKS[0][1]  # level 0 asks about popular countries


def test_prepare_corpus_and_corpus_dataset(tmp_path):
    from lite.modeling import train_tokenizer

    out = tmp_path / "corpus.jsonl"
    cli.main(["prepare-corpus", "--n", "50", "--seed", "3", "--out", str(out)])
    rows = read_jsonl(out)
    assert len(rows) == 50 and all(r["text"].count(".") >= 2 for r in rows)
    assert read_json(tmp_path / "corpus.jsonl.config.json")["world"]["countries"] == world.N_COUNTRIES
    tokenizer = train_tokenizer(read_corpus_texts(out), 400)
    dataset = CorpusDataset(out, tokenizer, max_length=128)
    example = dataset[0]
    # every token is learned except BOS, which nothing predicts
    assert example["input_ids"][0] == tokenizer.bos_token_id and example["labels"][0] == -100
    assert example["labels"][1:] == example["input_ids"][1:]
    assert example["input_ids"][-1] == tokenizer.eos_token_id
    with pytest.raises(InputError, match=r"corpus.jsonl:1 field 'text': .*max_length=8"):
        CorpusDataset(out, tokenizer, max_length=8)
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"text": "fine"}, {"txt": "typo"}])
    with pytest.raises(InputError, match=r"bad.jsonl:2 field 'text'"):
        read_corpus_texts(bad)

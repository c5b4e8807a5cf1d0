"""Eval-record I/O and the real-source loaders, on small fixtures written in each upstream format."""

from __future__ import annotations

import json

import pytest

from lite import cli
from lite.datasets import (
    EVAL_SOURCES,
    TRAIN_SOURCES,
    eval_record,
    load_alpaca,
    load_koala,
    load_selfinstruct,
    load_source,
    load_vicuna,
    load_wizardlm,
    read_eval_records,
    write_eval_records,
    write_train_records,
)
from lite.io import InputError, read_json, read_jsonl


def _write_lines(path, objects):
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


# --- common eval format -----------------------------------------------------------------------


def test_eval_records_round_trip(tmp_path):
    records = [
        eval_record("a_1", "Say hi.", "", "greet", "hi"),
        eval_record("a_2", "Sum these.", "1 2", "math", None),
    ]
    path = tmp_path / "sub" / "set.jsonl"
    assert write_eval_records(path, records) == 2
    assert read_eval_records(path) == records
    # canonical field order on disk
    first = path.read_text().splitlines()[0]
    assert list(json.loads(first)) == ["id", "instruction", "input", "category", "reference"]


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"reference": 3}, "reference", "expected str or null, got int"),
        ({"category": None}, "category", "expected str, got NoneType"),
        ({"refrence": "x"}, "refrence", "not a field"),
        ({"instruction": "  "}, "instruction", "empty"),
    ],
)
def test_read_eval_records_names_file_line_field(tmp_path, change, field, message):
    good = eval_record("x_1", "Do it.", "", "c", None)
    bad = {**eval_record("x_2", "Do it.", "", "c", None), **change}
    path = _write_lines(tmp_path / "e.jsonl", [good, bad])
    with pytest.raises(InputError) as err:
        read_eval_records(path)
    assert f"{path}:2" in str(err.value)
    assert f"field {field!r}" in str(err.value)
    assert message in str(err.value)


def test_read_eval_records_missing_field_and_duplicates(tmp_path):
    record = eval_record("x_1", "Do it.", "", "c", None)
    missing = {k: v for k, v in record.items() if k != "input"}
    path = _write_lines(tmp_path / "m.jsonl", [missing])
    with pytest.raises(InputError, match=r"m\.jsonl:1 field 'input': missing"):
        read_eval_records(path)
    path = _write_lines(tmp_path / "d.jsonl", [record, record])
    with pytest.raises(InputError, match=r"d\.jsonl:2 field 'id': duplicate id 'x_1' \(first on line 1\)"):
        read_eval_records(path)
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps(record) + "\n{not json\n")
    with pytest.raises(InputError, match=r"j\.jsonl:2: not valid JSON"):
        read_eval_records(path)


def test_write_eval_records_rejects_bad_records_without_writing(tmp_path):
    path = tmp_path / "out.jsonl"
    records = [eval_record("a", "x", "", "c", None), {"id": "b", "instruction": "x"}]
    with pytest.raises(InputError, match="record 1"):
        write_eval_records(path, records)
    assert not path.exists()
    with pytest.raises(InputError, match="duplicate id 'a'"):
        write_eval_records(path, [records[0], records[0]])
    assert not path.exists()


def test_write_train_records_validates(tmp_path):
    path = tmp_path / "t.jsonl"
    assert write_train_records(path, [{"instruction": "a", "input": "", "output": "b"}]) == 1
    assert read_jsonl(path) == [{"instruction": "a", "input": "", "output": "b"}]
    with pytest.raises(InputError, match="field 'output': expected a string"):
        write_train_records(tmp_path / "u.jsonl", [{"instruction": "a", "input": "", "output": 1}])
    assert not (tmp_path / "u.jsonl").exists()


# --- Alpaca -----------------------------------------------------------------------------------


ALPACA = [
    {"instruction": "Give three tips.", "input": "", "output": "1. Eat.\n2. Sleep."},
    {"instruction": "Translate.", "input": "Hallo", "output": "Hello"},
    {"instruction": "Draw a logo.", "input": "ACME", "output": ""},  # Alpaca has a few empty outputs
]


def _alpaca_file(tmp_path, records):
    path = tmp_path / "alpaca_data.json"
    # upstream writes json.dumps(records, indent=4): each record starts on its own line
    path.write_text(json.dumps(records, indent=4), encoding="utf-8")
    return path


def test_load_alpaca(tmp_path):
    path = _alpaca_file(tmp_path, ALPACA)
    assert load_alpaca(path) == ALPACA
    assert load_alpaca(path, limit=2) == ALPACA[:2]
    assert load_source("alpaca", path) == ALPACA


def test_load_alpaca_names_line_of_bad_record(tmp_path):
    records = [*ALPACA, {"instruction": "Count.", "input": "", "output": 7}]
    path = _alpaca_file(tmp_path, records)
    start_line = 2 + 5 * len(ALPACA)  # "[" then 5 lines per 3-field record (indent=4)
    assert path.read_text().splitlines()[start_line - 1].strip() == "{"
    with pytest.raises(InputError) as err:
        load_alpaca(path)
    assert f"{path}:{start_line} field 'output': expected a string, got int" in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"instruction": "x"}', "expected a JSON array"),
        ('[{"instruction": "x", "input": "", "output": "y"} {"a": 1}]', "expected ',' or ']'"),
        ('[{"instruction": "x", "input": "", "output": "y"},\n {"instruction": ]', ":2: not valid JSON"),
        ('[{"input": "", "output": "y"}]', "field 'instruction': missing"),
        ('[["not", "an", "object"]]', "expected a JSON object, got list"),
        ("[] []", "extra data"),
    ],
)
def test_load_alpaca_malformed(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match="bad.json") as err:
        load_alpaca(path)
    assert message in str(err.value)


# --- eval sources -----------------------------------------------------------------------------


VICUNA_OLD = [
    {"question_id": 1, "text": "How can I sleep better?", "category": "generic"},
    {"question_id": 2, "text": "Write a haiku.", "category": "writing"},
]
VICUNA_NEW = [
    {"question_id": 1, "category": "generic", "turns": ["How can I sleep better?"]},
    {"question_id": 2, "category": "writing", "turns": ["Write a haiku."]},
]


def test_load_vicuna_both_formats_agree(tmp_path):
    old = load_vicuna(_write_lines(tmp_path / "old.jsonl", VICUNA_OLD))
    new = load_vicuna(_write_lines(tmp_path / "new.jsonl", VICUNA_NEW))
    assert (
        old
        == new
        == [
            eval_record("vicuna_1", "How can I sleep better?", "", "generic", None),
            eval_record("vicuna_2", "Write a haiku.", "", "writing", None),
        ]
    )


def test_load_vicuna_errors(tmp_path):
    two_turns = [{"question_id": 1, "category": "math", "turns": ["Solve x.", "Now y."]}]
    with pytest.raises(InputError, match=r"t\.jsonl:1 field 'turns': expected exactly one string turn"):
        load_vicuna(_write_lines(tmp_path / "t.jsonl", two_turns))
    no_category = [VICUNA_OLD[0], {"question_id": 2, "text": "Hi"}]
    with pytest.raises(InputError, match=r"c\.jsonl:2 field 'category': missing"):
        load_vicuna(_write_lines(tmp_path / "c.jsonl", no_category))
    duplicate = [VICUNA_OLD[0], VICUNA_OLD[0]]
    with pytest.raises(InputError, match=r"d\.jsonl:2: duplicate id 'vicuna_1'"):
        load_vicuna(_write_lines(tmp_path / "d.jsonl", duplicate))


def test_load_koala(tmp_path):
    path = _write_lines(
        tmp_path / "k.jsonl", [{"id": "koala_0", "prompt": "Hi?"}, {"id": "koala_1", "prompt": "Why?"}]
    )
    assert load_koala(path) == [
        eval_record("koala_0", "Hi?", "", "koala", None),
        eval_record("koala_1", "Why?", "", "koala", None),
    ]
    bad = _write_lines(tmp_path / "b.jsonl", [{"id": "koala_0", "prompt": 5}])
    with pytest.raises(InputError, match=r"b\.jsonl:1 field 'prompt': expected str, got int"):
        load_koala(bad)


def test_load_wizardlm(tmp_path):
    rows = [
        {"idx": 1, "Skill": "Math", "Difficulty": 3, "Instruction": "Add 2 and 2."},
        {"idx": 2, "Skill": "Writting", "Difficulty": 7, "Instruction": "Write a poem."},
    ]
    records = load_wizardlm(_write_lines(tmp_path / "w.jsonl", rows))
    assert records == [
        eval_record("wizardlm_1", "Add 2 and 2.", "", "Math", None),
        eval_record("wizardlm_2", "Write a poem.", "", "Writting", None),
    ]
    rows[1].pop("Instruction")
    with pytest.raises(InputError, match=r"w2\.jsonl:2 field 'Instruction': missing"):
        load_wizardlm(_write_lines(tmp_path / "w2.jsonl", rows))


def test_load_selfinstruct(tmp_path):
    rows = [
        {
            "id": "user_oriented_task_0",
            "motivation_app": "Grammarly",
            "instruction": "Fix the grammar.",
            "instances": [{"input": "he go home", "output": "He goes home."}],
        },
        {
            "id": "user_oriented_task_1",
            "motivation_app": "Google Search",
            "instruction": "Name a fruit.",
            "instances": [{"input": "", "output": "Apple."}],
        },
    ]
    records = load_selfinstruct(_write_lines(tmp_path / "s.jsonl", rows))
    assert records == [
        eval_record("user_oriented_task_0", "Fix the grammar.", "he go home", "Grammarly", None),
        eval_record("user_oriented_task_1", "Name a fruit.", "", "Google Search", None),
    ]
    rows[0]["instances"] = []
    with pytest.raises(InputError, match=r"s2\.jsonl:1 field 'instances': expected a non-empty list"):
        load_selfinstruct(_write_lines(tmp_path / "s2.jsonl", rows))
    rows[0]["instances"] = [{"input": 3}]
    with pytest.raises(InputError, match=r"s3\.jsonl:1 field 'instances\[0\]\.input': expected str"):
        load_selfinstruct(_write_lines(tmp_path / "s3.jsonl", rows))


def test_load_source_dispatch(tmp_path):
    assert set(EVAL_SOURCES) == {"vicuna", "koala", "wizardlm", "selfinstruct"}
    assert set(TRAIN_SOURCES) == {"alpaca"}
    path = _write_lines(tmp_path / "v.jsonl", VICUNA_OLD)
    assert load_source("vicuna", path, limit=1) == load_vicuna(path)[:1]
    with pytest.raises(InputError, match="unknown source 'dolly'"):
        load_source("dolly", path)
    with pytest.raises(InputError, match="no such file"):
        load_source("koala", tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="limit must be >= 1"):
        load_source("vicuna", path, limit=0)


# --- commands on real-format files ------------------------------------------------------------


def test_prepare_eval_from_real_source(tmp_path):
    source = _write_lines(tmp_path / "question.jsonl", VICUNA_NEW)
    out = tmp_path / "results" / "eval" / "vicuna.jsonl"
    argv = [
        "prepare-eval",
        "--source",
        "vicuna",
        "--name",
        "vicuna",
        "--path",
        str(source),
        "--no-verify",  # a small fixture in the upstream format, not the pinned file
        "--out",
        str(out),
    ]
    assert cli.main([*argv, "--limit", "1"]) == 0
    assert read_eval_records(out) == load_vicuna(source)[:1]
    config = read_json(str(out) + ".config.json")
    assert config["source"] == "vicuna" and config["records"] == 1 and config["path"] == str(source)
    assert config["input_sha256"].startswith("sha256:") and config["categories"] == {"generic": 1}
    assert config["verified"] is False


def test_prepare_train_from_alpaca(tmp_path):
    source = _alpaca_file(tmp_path, ALPACA)
    out = tmp_path / "train.jsonl"
    argv = ["prepare-train", "--source", "alpaca", "--path", str(source), "--no-verify"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert read_jsonl(out) == ALPACA
    assert read_json(str(out) + ".config.json")["records"] == 3
    with pytest.raises(InputError, match="--families is for --source synthetic"):
        cli.main(
            [
                "prepare-train",
                "--source",
                "alpaca",
                "--path",
                str(source),
                "--out",
                str(out),
                "--families",
                "x",
            ]
        )


def test_alpaca_heldout_samples_the_last_tenth_with_references(tmp_path):
    from lite.datasets import alpaca_heldout

    rows = [{"instruction": f"task {i}", "input": "", "output": f"answer {i}"} for i in range(100)]
    rows[95]["output"] = ""  # an empty output cannot serve as a reference
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(rows, indent=4))
    held = alpaca_heldout(rows, n=None, seed=0, path=path)
    assert [r["id"] for r in held] == [f"alpaca_{i}" for i in range(90, 100) if i != 95]
    assert all(r["reference"] == f"answer {r['id'].split('_')[1]}" for r in held)
    assert {r["category"] for r in held} == {"alpaca"}
    sample = alpaca_heldout(rows, n=4, seed=3, path=path)
    assert sample == alpaca_heldout(rows, n=4, seed=3, path=path) and len(sample) <= 4
    assert {r["id"] for r in sample} <= {r["id"] for r in held}

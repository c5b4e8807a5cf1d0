"""Sharded generation: the round-robin split, the merge, real shards of `lite generate`/`lite trace`
merged back equal to one unsharded run, and what `generation.shards` adds to the DAG."""

from __future__ import annotations

import json

import pytest
import yaml
from test_workflow import CI_CONFIG, copy_workflow, planned_jobs, snakemake

from lite.cli import main
from lite.io import InputError, config_path, read_json, read_jsonl
from lite.shards import merge_records, select_shard, shard_files


@pytest.mark.parametrize(("n", "num_shards"), [(7, 3), (6, 3), (2, 3), (0, 2), (5, 1), (10, 4)])
def test_round_robin_split_and_merge_round_trip_in_order(n, num_shards):
    records = [f"r{i}" for i in range(n)]
    shards = [select_shard(records, i, num_shards) for i in range(num_shards)]

    assert sorted(sum(shards, [])) == sorted(records)  # every record in exactly one shard
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert all(record.removeprefix("r").isdigit() for record in shards[0])
    assert shards[0][:2] == records[0 : 2 * num_shards : num_shards]  # record j -> shard j % N
    assert merge_records(shards) == records


def test_split_rejects_a_shard_outside_the_range():
    with pytest.raises(InputError, match="--shard must be in 0..2"):
        select_shard([1, 2, 3], 3, 3)
    with pytest.raises(InputError, match="--num-shards must be >= 1"):
        select_shard([1, 2, 3], 0, 0)


def test_merge_rejects_shards_that_do_not_fit_a_split():
    with pytest.raises(
        ValueError,
        match="shard 0 of 2 holds 2 records; a round-robin split of 5 records gives it 3",
    ):
        merge_records([["a", "b"], ["c", "d", "e"]])


def test_shard_files_live_in_their_own_tree():
    assert shard_files("results/m/generations/lite/vic/final.jsonl", 2) == [
        "results/m/shards/generations/lite/vic/final/0-of-2.jsonl",
        "results/m/shards/generations/lite/vic/final/1-of-2.jsonl",
    ]
    assert shard_files("results/m/traces/it/calibration.jsonl", 1) == [
        "results/m/shards/traces/it/calibration/0-of-1.jsonl"
    ]


# ---------------------------------------------------------------- real shards of lite generate/trace


@pytest.fixture(scope="module")
def model_and_evalset(tmp_path_factory):
    """A 3-layer tiny model (tokenizer trained on a small synthetic set) and a 7-prompt eval set."""
    root = tmp_path_factory.mktemp("shards")
    train, evalset, model = root / "train.jsonl", root / "vic.jsonl", root / "model"
    main(["prepare-train", "--source", "synthetic", "--n", "60", "--seed", "0", "--out", str(train)])
    main(["prepare-eval", "--source", "synthetic", "--name", "vicuna", "--n", "7", "--out", str(evalset)])
    main(
        ["init-model", "--kind", "tiny", "--train", str(train), "--out", str(model), "--layers", "3"]
        + ["--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "64", "--vocab", "300"]
    )
    return root, model, evalset


def _decode(command: str, model, evalset, out, *extra: str) -> None:
    args = [command, "--model", str(model), "--evalset", str(evalset), "--out", str(out)]
    args += ["--model-name", "tiny3", "--tuning", "lite", "--evalset-name", "vic"]
    # batches of 2 over 7 prompts: the shards batch different prompts together than the full run
    args += ["--max-new-tokens", "5", "--batch-size", "2", "--threads", "1", *extra]
    if command == "generate":
        args += ["--checkpoints", "1,2,3"]
    main(args)


# Softmax confidences are float32 results of batched matmuls: a prompt batched with other prompts
# (other padding) may differ in the last bit. Tokens, exits and FLOPs must match exactly.
FLOAT_FIELDS = {"confidences", "layer_confidence"}


def _without_floats(records: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key not in FLOAT_FIELDS} for record in records]


def _flat(value) -> list[float]:
    return [x for row in value for x in _flat(row)] if isinstance(value, list) else [value]


@pytest.mark.parametrize(("command", "decoder"), [("generate", "random-half"), ("trace", None)])
def test_three_shards_merged_equal_one_unsharded_run(model_and_evalset, tmp_path, command, decoder):
    _, model, evalset = model_and_evalset
    extra = () if decoder is None else ("--decoder", decoder)
    whole = tmp_path / "whole.jsonl"
    _decode(command, model, evalset, whole, *extra)
    parts = [tmp_path / f"{i}-of-3.jsonl" for i in range(3)]
    for index, part in enumerate(parts):
        _decode(command, model, evalset, part, *extra, "--shard", str(index), "--num-shards", "3")

    sizes = [len(read_jsonl(part)) for part in parts]
    assert sizes == [3, 2, 2]
    assert read_json(config_path(parts[1]))["shard"] == {"index": 1, "count": 3, "total_records": 7}

    merged = tmp_path / "merged.jsonl"
    main(["merge-shards", "--out", str(merged), *map(str, parts)])
    expected = read_jsonl(whole)
    assert [r["id"] for r in read_jsonl(merged)] == [r["id"] for r in expected]  # eval set order
    assert _without_floats(read_jsonl(merged)) == _without_floats(expected)
    for got, want in zip(read_jsonl(merged), expected, strict=True):
        for key in FLOAT_FIELDS & set(want):
            assert _flat(got[key]) == pytest.approx(_flat(want[key]), rel=1e-5, abs=1e-7), key
    assert [r["id"] for r in read_jsonl(parts[0])] == [expected[j]["id"] for j in (0, 3, 6)]

    merged_config, whole_config = read_json(config_path(merged)), read_json(config_path(whole))
    assert merged_config.pop("merged_from") == [str(part) for part in parts]
    assert merged_config == whole_config  # the same settings as the unsharded run, shard info gone


def test_merge_refuses_shards_out_of_order_or_made_differently(model_and_evalset, tmp_path):
    _, model, evalset = model_and_evalset
    parts = [tmp_path / f"{i}-of-2.jsonl" for i in range(2)]
    for index, part in enumerate(parts):
        _decode("trace", model, evalset, part, "--shard", str(index), "--num-shards", "2")
    out = tmp_path / "merged.jsonl"

    with pytest.raises(InputError, match=r"1-of-2\.jsonl\.config\.json field 'shard\.index'"):
        main(["merge-shards", "--out", str(out), str(parts[1]), str(parts[0])])
    with pytest.raises(InputError, match="a shard of 2, but 1 files were given"):
        main(["merge-shards", "--out", str(out), str(parts[0])])

    config = read_json(config_path(parts[1]))
    config["max_new_tokens"] = 99
    config_path(parts[1]).write_text(json.dumps(config))
    with pytest.raises(InputError, match="field 'max_new_tokens': differs"):
        main(["merge-shards", "--out", str(out), *map(str, parts)])

    config_path(parts[1]).unlink()
    with pytest.raises(InputError, match="missing"):
        main(["merge-shards", "--out", str(out), *map(str, parts)])
    assert not out.exists()  # nothing half-merged was written


# ---------------------------------------------------------------- the DAG


def test_three_shards_plan_three_times_the_decoding_jobs_plus_merges(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    assert config["generation"].get("shards", 1) == 1
    unsharded = planned_jobs(snakemake(copy_workflow(tmp_path / "one", config), "-n", "all", timeout=120))
    config["generation"]["shards"] = 3
    sharded = planned_jobs(snakemake(copy_workflow(tmp_path / "three", config), "-n", "all", timeout=120))

    assert "merge_generations" not in unsharded and "merge_traces" not in unsharded
    decoding = ("generate", "trace", "trace_calibration")
    for rule in decoding:
        assert sharded.get(rule, 0) == 3 * unsharded.get(rule, 0), rule
    # a generate job decodes every eval set, a trace job every eval set, a calibration trace one:
    # one merge per file
    sets = len(config["data"]["eval"])
    assert sharded["merge_generations"] == sets * unsharded["generate"]
    assert sharded["merge_traces"] == sets * unsharded["trace"] + unsharded.get("trace_calibration", 0)
    rest = {rule: n for rule, n in sharded.items() if rule not in decoding}
    rest.pop("merge_generations"), rest.pop("merge_traces")
    assert rest == {rule: n for rule, n in unsharded.items() if rule not in decoding}


def test_each_shard_job_gets_its_shard_and_the_merge_gets_all_shards_in_order(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["generation"]["shards"] = 3
    workdir = copy_workflow(tmp_path, config)
    target = "results/tiny4/generations/lite/vicuna/final.jsonl"
    result = snakemake(workdir, "-n", "-p", target, timeout=120)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text

    for index in range(3):
        assert f"--shard {index} --num-shards 3" in text
        assert f"results/tiny4/shards/generations/lite/vicuna/final/{index}-of-3.jsonl" in text
    shards = " ".join(f"results/tiny4/shards/generations/lite/vicuna/final/{i}-of-3.jsonl" for i in range(3))
    assert f"lite merge-shards --out {target} {shards}" in text

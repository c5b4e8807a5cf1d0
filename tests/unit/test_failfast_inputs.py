"""Bad inputs fail at once, with one line naming the file, line and field, and leave no output:
empty sets, bytes that are not UTF-8, local copies of known sets that are not the pinned file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from test_workflow import CI_CONFIG, copy_workflow, snakemake

from lite import cli
from lite.datasets import load_koala, read_eval_records
from lite.download import SOURCES, ChecksumError, PinnedSource, verify_pinned
from lite.io import InputError, read_json, read_numbered

KOALA = [{"id": f"koala_{i}", "prompt": f"Question number {i}?"} for i in range(4)]
ALPACA = [{"instruction": f"Task {i}.", "input": "", "output": f"Answer {i}."} for i in range(20)]


def lines(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture
def pinned(tmp_path, monkeypatch):
    """Known sets pinned to small files of their upstream formats (as SOURCES pins the real ones)."""
    koala, alpaca = tmp_path / "koala_test_set.jsonl", tmp_path / "alpaca_data.json"
    koala.write_bytes(lines(KOALA))
    alpaca.write_text(json.dumps(ALPACA, indent=4))
    blob = hashlib.sha1(b"blob %d\0" % alpaca.stat().st_size + alpaca.read_bytes()).hexdigest()
    sha = "sha256:" + hashlib.sha256(koala.read_bytes()).hexdigest()
    monkeypatch.setitem(
        SOURCES, "koala", PinnedSource("koala", "http://127.0.0.1:9/k", sha, "koala", "k", "t", 4)
    )
    monkeypatch.setitem(
        SOURCES,
        "alpaca",
        PinnedSource("alpaca", "http://127.0.0.1:9/a", f"gitblob:{blob}", "alpaca", "a", "t", 20),
    )
    return koala, alpaca


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def prepare(kind: str, source: str, path, out, *extra):
    return cli.main([f"prepare-{kind}", "--source", source, "--path", str(path), "--out", str(out), *extra])


# --- empty sets -------------------------------------------------------------------------------


def test_an_empty_or_blank_eval_file_is_an_error(tmp_path):
    out = tmp_path / "out" / "koala.jsonl"
    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n\t\n")):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=rf"{name}: no records \(the file is empty or holds only blank"):
            prepare("eval", "koala", path, out, "--no-verify")
        with pytest.raises(InputError, match=rf"{name}: no records"):
            read_eval_records(path)
    assert leftovers(out.parent) == []


def test_an_empty_alpaca_array_is_an_error_for_train_and_eval(tmp_path):
    path = tmp_path / "alpaca_data.json"
    path.write_text("[]")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"alpaca_data\.json: no records"):
        prepare("train", "alpaca", path, out / "train.jsonl", "--no-verify")
    with pytest.raises(InputError, match=r"alpaca_data\.json: no records"):  # was an IndexError
        prepare("eval", "alpaca", path, out / "eval.jsonl", "--no-verify", "--n", "3")
    path.write_text(json.dumps([{"instruction": "Draw.", "input": "", "output": ""}]))
    with pytest.raises(InputError, match="no record of the held-out last tenth has a non-empty output"):
        prepare("eval", "alpaca", path, out / "eval.jsonl", "--no-verify")
    assert leftovers(out) == []


# --- bytes that are not UTF-8 -----------------------------------------------------------------


def test_a_byte_that_is_not_utf8_names_file_line_and_column(tmp_path):
    jsonl = tmp_path / "koala.jsonl"
    jsonl.write_bytes(lines(KOALA[:2]) + b'{"id": "koala_2", "prompt": "caf\xe9?"}\n')
    with pytest.raises(InputError) as err:
        load_koala(jsonl)
    assert str(err.value).startswith(f"{jsonl}:3: not valid UTF-8 (byte 0xe9 at column 33)")
    array = tmp_path / "alpaca.json"
    array.write_bytes(json.dumps(ALPACA[:2], indent=4).encode().replace(b"Task 1", b"T\xffsk 1"))
    with pytest.raises(InputError, match=r"alpaca\.json:8: not valid UTF-8 \(byte 0xff at column 26\)"):
        read_numbered(array)
    with pytest.raises(InputError, match=r"alpaca\.json:8: not valid UTF-8"):
        read_json(array)
    out = tmp_path / "out" / "koala.jsonl"
    with pytest.raises(InputError, match=r"koala\.jsonl:3: not valid UTF-8"):
        prepare("eval", "koala", jsonl, out, "--no-verify")
    assert leftovers(out.parent) == []


# --- local copies of known sets ---------------------------------------------------------------


def test_a_local_copy_is_checked_against_the_pin(tmp_path, pinned):
    koala, alpaca = pinned
    out = tmp_path / "out"
    assert prepare("eval", "koala", koala, out / "koala.jsonl") == 0
    assert read_json(out / "koala.jsonl.config.json")["verified"] is True
    cut = tmp_path / "cut" / "koala_test_set.jsonl"
    cut.parent.mkdir()
    cut.write_bytes(b"".join(koala.read_bytes().splitlines(keepends=True)[:3]))
    with pytest.raises(ChecksumError, match=rf"{cut}: not the pinned koala file \(expected sha256:"):
        prepare("eval", "koala", cut, out / "cut.jsonl")
    flipped = tmp_path / "flipped.json"
    flipped.write_bytes(alpaca.read_bytes().replace(b"Answer 7.", b"Answer 8."))
    with pytest.raises(ChecksumError, match="not the pinned alpaca file .*set `verify: false`"):
        prepare("train", "alpaca", flipped, out / "train.jsonl")
    assert leftovers(out) == ["koala.jsonl", "koala.jsonl.config.json"]
    # data of one's own: an explicit, recorded opt-out
    assert prepare("eval", "koala", cut, out / "own.jsonl", "--no-verify") == 0
    assert len(read_eval_records(out / "own.jsonl")) == 3
    assert read_json(out / "own.jsonl.config.json")["verified"] is False


def test_the_record_count_of_a_known_set_is_checked(tmp_path, pinned, monkeypatch):
    koala, _ = pinned
    source = SOURCES["koala"]
    monkeypatch.setitem(SOURCES, "koala", PinnedSource(**{**source.__dict__, "records": 5}))
    with pytest.raises(InputError, match=r"read 4 records from the pinned koala file, expected 5"):
        prepare("eval", "koala", koala, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    verify_pinned("koala", koala)  # the bytes themselves are the pinned ones


def test_the_pins_record_the_upstream_counts():
    counts = {name: source.records for name, source in SOURCES.items()}
    assert counts == {"alpaca": 52_002, "vicuna": 80, "vicuna_bench": 80, "koala": 180, "wizardlm": 218,
                      "selfinstruct": 252}  # fmt: skip


def test_verify_false_in_the_config_reaches_the_command(tmp_path):
    config = yaml.safe_load(CI_CONFIG.read_text())
    config["data"]["eval"]["vicuna"] = {"source": "koala", "n": 2, "path": "own/koala.jsonl", "verify": False}
    config["data"]["calibration"] = {"source": "koala", "n": 2, "path": "own/koala.jsonl"}
    config["judge"]["name"] = "claude"  # Koala has no gold answers; a dry run needs no key
    workdir = copy_workflow(tmp_path, config)
    (workdir / "own").mkdir()
    (workdir / "own" / "koala.jsonl").write_bytes(lines(KOALA))
    result = snakemake(
        workdir, "-n", "-p", "results/data/eval/vicuna.jsonl", "results/data/eval/calibration.jsonl"
    )
    commands = [line for line in (result.stdout + result.stderr).splitlines() if "lite prepare-eval" in line]
    assert result.returncode == 0 and len(commands) == 2, result.stdout + result.stderr
    assert sum("--no-verify" in command for command in commands) == 1
    assert all("--path own/koala.jsonl" in command for command in commands)


# --- what a user sees -------------------------------------------------------------------------


def test_errors_are_one_line_without_a_traceback(tmp_path):
    bad = tmp_path / "koala.jsonl"
    bad.write_bytes(lines(KOALA[:1]) + b'{"id": "koala_1", "prompt": 5}\n')
    out = tmp_path / "out" / "koala.jsonl"
    args = [sys.executable, "-m", "lite.cli", "prepare-eval", "--source", "koala", "--path", str(bad),
            "--no-verify", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    message = f"lite prepare-eval: error: {bad}:2 field 'prompt': expected str, got int"
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == message, done.stderr
    assert "Traceback" not in done.stderr and leftovers(out.parent) == []
    debug = subprocess.run([*args, "--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and message in debug.stderr


def test_a_directory_given_as_the_source_file_is_called_a_directory(tmp_path):
    folder = tmp_path / "koala"
    folder.mkdir()
    argv = ["prepare-eval", "--source", "koala", "--path", str(folder), "--out", str(tmp_path / "k.jsonl")]
    for verify in ([], ["--no-verify"]):  # the pinned-file check, and the loader of one's own data
        with pytest.raises(InputError, match=f"^{re.escape(str(folder))}: is a directory, not a file"):
            cli.main([*argv, *verify])
    assert leftovers(tmp_path) == ["koala"]


def test_ctrl_c_in_any_command_ends_with_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    from lite.commands import prepare_eval

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_eval, "run", interrupted)
    argv = ["lite", "prepare-eval", "--source", "synthetic", "--out", str(tmp_path / "e.jsonl")]
    monkeypatch.setattr(sys, "argv", argv)
    assert cli.main() == 130
    assert capsys.readouterr().err == "lite prepare-eval: interrupted; rerun to continue\n"

"""The bidirectional protocol, the reference judge, the prompt data and the `lite judge` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lite.cli import main
from lite.io import InputError, read_json
from lite.judge import ReferenceJudge, judge_pair, load_pair, read_judgments, summarize
from lite.judge.prompts import load_prompt, question_text
from lite.judge.protocol import Reply, asks_for
from lite.judge.reference import reference_score, token_f1

APPENDIX_A = (
    "[Question] {question} [The Start of Assistant 1's Answer] {answer_1} [The End of Assistant 1's Answer] "
    "[The Start of Assistant 2's Answer] {answer_2} [The End of Assistant 2's Answer] [System] We would like "
    "to request your feedback on the performance of two AI assistants in response to the user question "
    "displayed above. Please rate the helpfulness, relevance, accuracy, level of details of their responses. "
    "Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better "
    "overall performance. Please first output a single line containing only two values indicating the scores "
    "for Assistant 1 and 2, respectively. The two scores are separated by a space. In the subsequent line, "
    "please provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring "
    "that the order in which the responses were presented does not affect your judgment."
)


def write_generations(path, tuning, decoder, items, *, model="tiny8", evalset="vic"):
    """Generation records (docs/records.md) for items of (id, instruction, text, reference)."""
    with open(path, "w", encoding="utf-8") as handle:
        for key, instruction, text, reference in items:
            record = {
                "model": model,
                "tuning": tuning,
                "evalset": evalset,
                "decoder": decoder,
                "id": key,
                "category": "generic",
                "instruction": instruction,
                "input": "",
                "reference": reference,
                "text": text,
                "token_ids": [],
                "exit_layers": [],
                "confidences": [],
            }
            handle.write(json.dumps(record) + "\n")
    return path


class ScriptedJudge:
    """Replies in ask order from a list; stands in for a judge with a position bias."""

    def __init__(self, texts):
        self.texts = list(texts)
        self.asks = []

    def settings(self):
        return {"name": "scripted", "model": None, "api_version": None, "prompt": "p", "prompt_version": 1,
                "sampling": {}, "max_tokens": None}  # fmt: skip

    def judge(self, asks):
        self.asks.extend(asks)
        return [Reply(text=t) for t in self.texts[: len(asks)]]


@pytest.fixture
def pair(tmp_path):
    items_a = [("q1", "Say hi", "hello there", "hello there"), ("q2", "Count", "one two", "one two three")]
    items_b = [("q1", "Say hi", "bye", "hello there"), ("q2", "Count", "one two three", "one two three")]
    a = write_generations(tmp_path / "a.jsonl", "lite", "final", items_a)
    b = write_generations(tmp_path / "b.jsonl", "lite", "dynamic-paper", items_b)
    return load_pair(a, b)


def test_prompt_is_appendix_a_word_for_word():
    prompt = load_prompt("pairwise-v1")
    assert " ".join(prompt.template.split()) == APPENDIX_A
    assert prompt.system is None and prompt.version == 1
    assert "FastChat" in prompt.source
    rendered = prompt.render("Q {x}?", "A1 {y}", "A2")
    assert "[Question]\nQ {x}?\n\n[The Start of Assistant 1's Answer]\nA1 {y}\n\n" in rendered


def test_the_papers_prompt_has_the_papers_wording():
    prompt = load_prompt("appendix-a-v1")
    rendered = prompt.render("Q?", "A1", "A2")
    assert "Please output a single line containing only two values" in rendered
    assert "Please first output" not in rendered
    assert "[System]" not in rendered.splitlines()
    assert rendered.startswith(
        "You are a helpful and precise assistant for checking the quality of the answer.\n"
    )
    assert prompt.system is None


def test_question_includes_the_input_when_there_is_one():
    assert question_text({"instruction": "Sum", "input": ""}) == "Sum"
    assert question_text({"instruction": "Sum", "input": "2 3"}) == "Sum\n\n2 3"


def test_both_orders_are_asked_and_mapped_back(pair):
    # q1: consistent (A wins in both orders); q2: the judge prefers whichever answer comes first.
    judge = ScriptedJudge(["8 7", "7 8", "9 5", "9 5"])
    records = judge_pair(judge, pair)
    first, second = judge.asks[0], judge.asks[1]
    assert (first.answer_1, first.answer_2) == ("hello there", "bye")
    assert (second.answer_1, second.answer_2) == ("bye", "hello there")
    q1, q2 = records
    assert q1["system_a"] == "lite.final" and q1["system_b"] == "lite.dynamic-paper"
    assert [o["first"] for o in q1["orders"]] == ["a", "b"]
    assert q1["orders"][1]["scores"] == [7, 8] and q1["orders"][1]["raw"] == "7 8"
    assert (q1["score_a"], q1["score_b"], q1["outcome"], q1["consistent"]) == (8.0, 7.0, "win", True)
    # q2: A gets 9 first and 5 second; B likewise: orders disagree, so a tie.
    assert (q2["score_a"], q2["score_b"], q2["outcome"], q2["consistent"]) == (7.0, 7.0, "tie", False)
    summary = summarize(records)
    assert summary["inconsistent"] == 1 and summary["inconsistency_rate"] == 0.5
    assert (summary["win"], summary["tie"], summary["loss"]) == (1, 1, 0)


def test_a_loss_and_an_unparseable_order(pair):
    judge = ScriptedJudge(["3 9", "9 3", "8 7", "no idea"])
    q1, q2 = judge_pair(judge, pair)
    assert q1["outcome"] == "loss" and q1["consistent"] is True
    assert q2["parsed"] is False and q2["orders"][1] == {
        "first": "b", "scores": None, "raw": "no idea", "parsed": False, "reasked": False, "first_raw": None,
        "error": None, "model": None,
    }  # fmt: skip
    assert (q2["score_a"], q2["score_b"], q2["outcome"], q2["consistent"]) == (None, None, None, None)
    summary = summarize([q1, q2])
    assert summary["unparseable_orders"] == 1 and summary["failed_orders"] == 0
    assert summary["parsed"] == 1 and summary["inconsistency_rate"] == 0.0


def test_reference_scores():
    assert reference_score("Hello  There", "hello there") == 10
    assert reference_score("   ", "hello") == 1
    assert reference_score("cat", "dog") == 1
    assert token_f1("one two", "one two three") == pytest.approx(0.8)
    assert reference_score("one two", "one two three") == pytest.approx(1 + 8 * 0.8)
    assert reference_score("hello there!", "hello there") == 9  # F1 1 but not an exact match


def test_reference_judge_is_order_independent(pair):
    records = judge_pair(ReferenceJudge(), pair)
    q1, q2 = records
    assert q1["orders"][0]["raw"] == "10 1" and q1["orders"][1]["raw"] == "1 10"
    assert (q1["score_a"], q1["score_b"], q1["outcome"]) == (10.0, 1.0, "win")
    assert (q2["score_a"], q2["score_b"], q2["outcome"]) == (pytest.approx(7.4), 10.0, "loss")
    assert summarize(records)["inconsistency_rate"] == 0.0
    assert q1["judge"]["name"] == "reference" and q1["judge"]["model"] is None


def test_reference_judge_needs_gold_answers(tmp_path):
    a = write_generations(tmp_path / "a.jsonl", "it", "final", [("q1", "x", "y", None)])
    b = write_generations(tmp_path / "b.jsonl", "lite", "final", [("q1", "x", "z", None)])
    with pytest.raises(InputError, match=r"a\.jsonl:1 field 'reference'"):
        judge_pair(ReferenceJudge(), load_pair(a, b))


def test_files_must_hold_the_same_ids(tmp_path):
    a = write_generations(tmp_path / "a.jsonl", "it", "final", [("q1", "x", "y", "y"), ("q2", "x", "y", "y")])
    b = write_generations(
        tmp_path / "b.jsonl", "lite", "final", [("q1", "x", "y", "y"), ("q3", "x", "y", "y")]
    )
    with pytest.raises(InputError, match=r"ids only in .*a\.jsonl: q2; ids only in .*b\.jsonl: q3"):
        load_pair(a, b)


def test_duplicate_ids_and_mixed_eval_sets_are_errors(tmp_path):
    a = write_generations(tmp_path / "a.jsonl", "it", "final", [("q1", "x", "y", "y"), ("q1", "x", "y", "y")])
    b = write_generations(tmp_path / "b.jsonl", "lite", "final", [("q1", "x", "y", "y")])
    with pytest.raises(InputError, match=r"a\.jsonl:2 field 'id': duplicate id 'q1'"):
        load_pair(a, b)
    a = write_generations(tmp_path / "a.jsonl", "it", "final", [("q1", "x", "y", "y")])
    b = write_generations(tmp_path / "b.jsonl", "lite", "final", [("q1", "x", "y", "y")], evalset="koala")
    with pytest.raises(InputError, match=r"field 'evalset'"):
        load_pair(a, b)


def test_asks_carry_the_place_of_the_instance(pair):
    assert asks_for(pair)[2].where.endswith("a.jsonl:2")


def test_lite_judge_reference_command(tmp_path, pair):
    out = tmp_path / "judgments" / "lite.final~lite.dynamic-paper.jsonl"
    main(
        [
            "judge",
            "--judge",
            "reference",
            "--a",
            pair.path_a,
            "--b",
            str(tmp_path / "b.jsonl"),
            "--out",
            str(out),
        ]
    )
    records = read_judgments(out)
    assert [r["id"] for r in records] == ["q1", "q2"]
    summary = read_json(out.with_name(out.name + ".summary.json"))
    assert summary["instances"] == 2 and summary["inconsistency_rate"] == 0.0
    config = read_json(out.with_name(out.name + ".config.json"))
    assert config["judge"]["name"] == "reference"
    assert not out.with_name(out.name + ".cost.csv").exists()


def test_judging_modules_never_import_torch():
    code = (
        "import sys, lite.judge, lite.judge.claude, lite.judge.batches, lite.judge.openai_compat, openai,"
        " lite.commands.judge;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'nvidia')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

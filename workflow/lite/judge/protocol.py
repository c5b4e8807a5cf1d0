"""The bidirectional protocol: every instance judged as (A, B) and (B, A), mapped back to systems.

A system's score on an instance is the mean of its two scores; the instance's outcome is A's
win / tie / loss, and two orders that disagree on the winner make it a tie (``consistent:
false``). A judge only answers :class:`Ask` s; this module decides what to ask and what the
answers mean, so the reference judge and Claude share it.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Protocol

from lite.judge.parsing import parse_scores
from lite.judge.prompts import question_text
from lite.judge.records import Instance, Pair


@dataclasses.dataclass(frozen=True)
class Ask:
    """One order of one instance: the judge sees answer_1 first."""

    question: str
    answer_1: str
    answer_2: str
    reference: str | None  # gold answer, used only by the reference judge
    where: str  # "file:line" of the instance, for error messages


@dataclasses.dataclass(frozen=True)
class Reply:
    text: str | None  # the judge's raw reply; None when the call failed
    error: str | None = None  # why the call failed after all retries, else None
    model: str | None = None  # the model id that answered (the API's resolved id)
    first_text: str | None = None  # when ``text`` is a re-ask: the first reply, whose scores were unreadable


class Judge(Protocol):
    def settings(self) -> dict:
        """The ``judge`` field of every record: name, model, api_version, prompt, sampling, max_tokens."""

    def judge(self, asks: list[Ask]) -> list[Reply]:
        """One reply per ask, in order; failures come back as replies with ``error`` set."""


def asks_for(pair: Pair) -> list[Ask]:
    """Two asks per instance, A first then B first."""
    asks = []
    for inst in pair.instances:
        question = question_text({"instruction": inst.instruction, "input": inst.input})
        place = f"{pair.path_a}:{inst.line_a}"
        asks.append(Ask(question, inst.answer_a, inst.answer_b, inst.reference, place))
        asks.append(Ask(question, inst.answer_b, inst.answer_a, inst.reference, place))
    return asks


def _order(first: str, reply: Reply) -> dict:
    parsed = parse_scores(reply.text)
    return {
        "first": first,
        "scores": list(parsed.scores) if parsed.parsed else None,
        "raw": reply.text,
        "parsed": parsed.parsed,
        "reasked": reply.first_text is not None,
        "first_raw": reply.first_text,
        "error": reply.error,
        "model": reply.model,
    }


def _winner(score_a: float, score_b: float) -> str:
    if score_a > score_b:
        return "a"
    if score_b > score_a:
        return "b"
    return "tie"


_OUTCOME = {"a": "win", "b": "loss", "tie": "tie"}


def judgment(pair: Pair, inst: Instance, reply_ab: Reply, reply_ba: Reply, settings: dict) -> dict:
    """The judgment record of one instance from its two replies (A first, B first)."""
    orders = [_order("a", reply_ab), _order("b", reply_ba)]
    record = {
        "model": pair.model,
        "evalset": pair.evalset,
        "id": inst.id,
        "category": inst.category,
        "system_a": pair.system_a,
        "system_b": pair.system_b,
        "orders": orders,
        "score_a": None,
        "score_b": None,
        "outcome": None,
        "consistent": None,
        "parsed": all(order["parsed"] for order in orders),
        "judge": settings,
    }
    if not record["parsed"]:
        # An unparseable or failed order leaves the instance unscored, never half-scored.
        return record
    # Map positions back to systems: in order "b" the first score is B's.
    (a1, b1), (b2, a2) = orders[0]["scores"], orders[1]["scores"]
    winners = (_winner(a1, b1), _winner(a2, b2))
    record["score_a"] = (a1 + a2) / 2
    record["score_b"] = (b1 + b2) / 2
    record["consistent"] = winners[0] == winners[1]
    record["outcome"] = _OUTCOME[winners[0]] if record["consistent"] else "tie"
    return record


def judge_pair(judge: Judge, pair: Pair) -> list[dict]:
    """Judge every instance of ``pair`` in both orders; one record per instance, in file A's order."""
    replies = judge.judge(asks_for(pair))
    settings = judge.settings()
    return [
        judgment(pair, inst, replies[2 * i], replies[2 * i + 1], settings)
        for i, inst in enumerate(pair.instances)
    ]


def summarize(records: list[dict]) -> dict:
    """Counts and rates over judgment records: what the quality tables report per pair."""
    parsed = [r for r in records if r["parsed"]]
    orders = [o for r in records for o in r["orders"]]
    inconsistent = sum(1 for r in parsed if not r["consistent"])
    outcomes = [r["outcome"] for r in parsed]
    return {
        "instances": len(records),
        "parsed": len(parsed),
        # An order is unparseable when the judge answered but gave no clear score pair, and
        # failed when the call itself failed after all retries; both leave the instance unscored.
        "unparseable_orders": sum(1 for o in orders if o["error"] is None and not o["parsed"]),
        "failed_orders": sum(1 for o in orders if o["error"] is not None),
        # Orders whose first reply had no readable scores and were asked once more.
        "reasked_orders": sum(1 for o in orders if o.get("reasked")),
        "win": outcomes.count("win"),
        "tie": outcomes.count("tie"),
        "loss": outcomes.count("loss"),
        "inconsistent": inconsistent,
        "inconsistency_rate": inconsistent / len(parsed) if parsed else None,
        "mean_score_a": statistics.fmean(r["score_a"] for r in parsed) if parsed else None,
        "mean_score_b": statistics.fmean(r["score_b"] for r in parsed) if parsed else None,
    }

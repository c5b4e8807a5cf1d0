"""The offline reference judge: scores each answer 1-10 against the eval record's gold answer.

Used by the embedded default (synthetic sets have gold answers; no network). Scoring, per answer:

- 10 when the answer equals the reference after lower-casing and collapsing whitespace;
- 1 when the answer is empty (or only whitespace);
- otherwise ``1 + 8 * F1``, rounded to 2 decimals, where F1 is the token-level F1 (SQuAD-style:
  lower-cased ``\\w+`` tokens, multiset overlap) between answer and reference; so 1..9, and only
  an exact match reaches 10.

It writes its scores as the text "s1 s2", which goes through the same parser and bidirectional
protocol as Claude's replies. Order cannot sway it, so its inconsistency rate is 0 (the protocol
still computes it, as for any judge).
"""

from __future__ import annotations

import re
from collections import Counter

from lite.io import InputError
from lite.judge.protocol import Ask, Reply

SCORING = "reference-token-f1"
SCORING_VERSION = 1
_TOKEN = re.compile(r"\w+")


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def token_f1(answer: str, reference: str) -> float:
    answer_tokens = _TOKEN.findall(answer.lower())
    reference_tokens = _TOKEN.findall(reference.lower())
    overlap = sum((Counter(answer_tokens) & Counter(reference_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(answer_tokens)
    recall = overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def reference_score(answer: str, reference: str) -> float:
    """1..10 as described in the module docstring."""
    if not answer.strip():
        return 1
    if normalise(answer) == normalise(reference):
        return 10
    return round(1 + 8 * token_f1(answer, reference), 2)


class ReferenceJudge:
    """A judge with the same interface as the Claude judge, for sets with gold answers."""

    def settings(self) -> dict:
        return {
            "name": "reference",
            "model": None,
            "api_version": None,
            "prompt": SCORING,
            "prompt_version": SCORING_VERSION,
            "sampling": {},
            "max_tokens": None,
        }

    def judge(self, asks: list[Ask]) -> list[Reply]:
        replies = []
        for ask in asks:
            if ask.reference is None:
                raise InputError(
                    f"{ask.where} field 'reference': null, but the reference judge needs a gold answer "
                    "(set judge.name: claude for eval sets without one)"
                )
            first = reference_score(ask.answer_1, ask.reference)
            second = reference_score(ask.answer_2, ask.reference)
            replies.append(Reply(text=f"{first:g} {second:g}"))
        return replies

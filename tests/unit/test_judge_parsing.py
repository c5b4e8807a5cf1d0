"""Score parsing: what models really write is read; anything unclear is unparseable, never guessed."""

from __future__ import annotations

import pytest

from lite.judge.parsing import parse_scores


@pytest.mark.parametrize(
    "text, scores",
    [
        ("8 7", (8, 7)),
        ("8 7\nAssistant 1 gave more detail.", (8, 7)),
        ("8/10 7/10", (8, 7)),
        ("8 / 10  7 / 10", (8, 7)),
        ("8 out of 10, 7 out of 10", (8, 7)),
        ("Assistant 1: 8\nAssistant 2: 7", (8, 7)),
        ("Assistant 1 receives a score of 8/10, while Assistant 2 gets 6.5/10.", (8, 6.5)),
        ("**Assistant 1**: 9\n**Assistant 2**: 4\n\nBoth were relevant.", (9, 4)),
        ("Here are my scores for the two assistants.\n8 7\nThe first answer is better.", (8, 7)),
        ("Scores: 8, 7", (8, 7)),
        ("**8 7**", (8, 7)),
        ("8.5 7.25", (8.5, 7.25)),
        ("9 and 6", (9, 6)),
        ("10 1", (10, 1)),
    ],
)
def test_reads_the_scores_models_write(text, scores):
    parsed = parse_scores(text)
    assert parsed.parsed
    assert parsed.scores == scores


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot compare these answers.",
        "Both answers are good, but Assistant 1 is more detailed.",
        "Assistant 1 and Assistant 2 are both fine",
        "8",  # one score
        "8 7 6",  # three numbers: which two?
        "0 7",  # outside 1..10
        "11 3",
        "2023 2024\n8 7",  # the first score-shaped line is out of range: not searched further
        "Assistant 1: 8\nAssistant 1: 9\nAssistant 2: 7",  # two values for one assistant
        "1. Helpfulness\n2. Relevance",
        "I'd rate them 8 and 7 respectively because of the detail.",  # sentence, not a score line
    ],
)
def test_unclear_replies_are_unparseable(text):
    parsed = parse_scores(text)
    assert not parsed.parsed
    assert parsed.scores is None
    assert parsed.how == "unparseable"


def test_none_is_unparseable():
    assert not parse_scores(None).parsed


def test_integers_stay_integers_and_decimals_floats():
    scores = parse_scores("8 7.5").scores
    assert isinstance(scores[0], int) and isinstance(scores[1], float)

"""Read the two scores (Assistant 1, Assistant 2) out of a judge's reply, or say it can't.

The prompt asks for "a single line containing only two values"; models mostly comply but also
write "8/10 7/10", "Scores: 8, 7", "Assistant 1: 8\\nAssistant 2: 7", or put a sentence first.
Two readings are accepted, in this order:

1. a *score line*: the first line that holds nothing but two numbers (each optionally "/10" or
   "out of 10"), separated by a space, comma, semicolon or "and", optionally after a short label
   ending in a colon ("Scores: 8 7"); markdown emphasis is ignored;
2. *labelled* scores: "Assistant 1 ... 8" and "Assistant 2 ... 7" ("Assistant 1: 8",
   "Assistant 2 receives a score of 7/10"), each assistant given exactly one distinct value.

Scores must lie in 1..10 (decimals allowed). Anything else is unparseable and kept with its raw
text by the caller; nothing is guessed from stray numbers.
"""

from __future__ import annotations

import dataclasses
import re

_NUM = r"\d+(?:\.\d+)?"
_OUT_OF_TEN = r"(?:\s*/\s*10(?![\d.])|\s+out\s+of\s+10(?![\d.]))?"

_SCORE_LINE = re.compile(
    rf"^(?:[^\d:\n]{{0,80}}:\s*)?(?P<s1>{_NUM}){_OUT_OF_TEN}\s*(?:[,;&]|\band\b|\s)\s*"
    rf"(?P<s2>{_NUM}){_OUT_OF_TEN}\s*\.?$",
    re.IGNORECASE,
)
_LABELLED = re.compile(
    r"assistant\s*(?P<who>[12])(?![\d.])(?:'s)?\s*(?:overall\s+)?(?:score|rating)?\s*"
    r"(?:[:=]|\bis\b|\breceives\b|\bgets\b|\bscores\b|\bscored\b|\brated\b|\bdeserves\b)?\s*"
    r"(?:an?\s+)?(?:(?:overall\s+)?(?:score|rating)\s+of\s+)?"
    rf"(?P<score>{_NUM}){_OUT_OF_TEN}(?![\d.]*\d)",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"[*_`#>]")


@dataclasses.dataclass(frozen=True)
class ParsedScores:
    scores: tuple[float, float] | None  # (Assistant 1, Assistant 2); None when unparseable
    how: str  # "score-line" | "labelled" | "unparseable"

    @property
    def parsed(self) -> bool:
        return self.scores is not None


def _number(text: str) -> float:
    value = float(text)
    # Keep integers as ints so records read "8 7" back as [8, 7], as the judge wrote them.
    return int(value) if value.is_integer() and "." not in text else value


def _in_range(value: float) -> bool:
    return 1 <= value <= 10


def parse_scores(text: str | None) -> ParsedScores:
    """The two scores in ``text``; ``ParsedScores(None, "unparseable")`` when there is no clear pair."""
    if text is None:
        return ParsedScores(None, "unparseable")
    for line in text.splitlines():
        line = _MARKUP.sub("", line).strip()
        match = _SCORE_LINE.match(line)
        if match is None:
            continue
        # The first line shaped like a score pair decides: out-of-range values there mean the
        # reply is not what was asked for, and a later line is not searched for a better fit.
        first, second = _number(match["s1"]), _number(match["s2"])
        if _in_range(first) and _in_range(second):
            return ParsedScores((first, second), "score-line")
        return ParsedScores(None, "unparseable")
    found: dict[str, set[float]] = {"1": set(), "2": set()}
    for match in _LABELLED.finditer(_MARKUP.sub("", text)):
        found[match["who"]].add(_number(match["score"]))
    if len(found["1"]) == 1 and len(found["2"]) == 1:
        (first,), (second,) = found["1"], found["2"]
        if _in_range(first) and _in_range(second):
            return ParsedScores((first, second), "labelled")
    return ParsedScores(None, "unparseable")

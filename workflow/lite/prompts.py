"""The Stanford Alpaca prompt template, used for tuning and for every decoder.

The with-input variant is chosen when a record's ``input`` is non-empty (Self-Instruct's
instances go through it too); the response follows ``### Response:\\n``.
"""

from __future__ import annotations

PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def render_prompt(record: dict) -> str:
    """The prompt text for a record with ``instruction`` and optional ``input``."""
    text_input = record.get("input") or ""
    if text_input.strip():
        return PROMPT_WITH_INPUT.format(instruction=record["instruction"], input=text_input)
    return PROMPT_NO_INPUT.format(instruction=record["instruction"])

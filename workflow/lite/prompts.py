"""Prompt templates, used for tuning and for every decoder.

``alpaca`` is the Stanford Alpaca template the paper tuned with: the with-input variant is chosen
when a record's ``input`` is non-empty (Self-Instruct's instances go through it too), and the
response follows ``### Response:\\n``. ``compact`` keeps Alpaca's section markers but drops its
two-sentence preamble; the embedded default's tiny models use it because the preamble is ~35 of
a synthetic example's ~47 tokens, and tokens per step are what CPU training pays for.

A model's template is stored with its tokenizer (``tokenizer_config.json``, key
``prompt_template``), so tuning and generation can never disagree about it.
"""

from __future__ import annotations

from lite.io import InputError

_ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
_ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_COMPACT_NO_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"
_COMPACT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"

# name -> (template without input, template with input)
TEMPLATES: dict[str, tuple[str, str]] = {
    "alpaca": (_ALPACA_NO_INPUT, _ALPACA_WITH_INPUT),
    "compact": (_COMPACT_NO_INPUT, _COMPACT_WITH_INPUT),
}
DEFAULT_TEMPLATE = "alpaca"
TOKENIZER_KEY = "prompt_template"


def check_template(name: str) -> str:
    if name not in TEMPLATES:
        raise InputError(f"unknown prompt template {name!r}; choose from {', '.join(TEMPLATES)}")
    return name


def render_prompt(record: dict, template: str = DEFAULT_TEMPLATE) -> str:
    """The prompt text for a record with ``instruction`` and optional ``input``."""
    no_input, with_input = TEMPLATES[check_template(template)]
    text_input = record.get("input") or ""
    if text_input.strip():
        return with_input.format(instruction=record["instruction"], input=text_input)
    return no_input.format(instruction=record["instruction"])


def template_of(tokenizer) -> str:
    """The template a tokenizer's model was tuned with (Alpaca for models saved without one)."""
    return check_template(tokenizer.init_kwargs.get(TOKENIZER_KEY, DEFAULT_TEMPLATE))


def set_template(tokenizer, template: str) -> None:
    """Record the template in the tokenizer, so ``save_pretrained`` stores it with the model."""
    tokenizer.init_kwargs[TOKENIZER_KEY] = check_template(template)

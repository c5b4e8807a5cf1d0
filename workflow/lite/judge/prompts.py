"""Judge prompts as versioned data: ``lite/judge/prompts/<name>.yaml`` (name, version, template).

A prompt is never edited in place: a new wording gets a new file and name, so every cached call
and every judgment names exactly the wording that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import string
from pathlib import Path

import yaml

from lite.io import InputError, where

PROMPT_DIR = Path(__file__).parent / "prompts"
SLOTS = ("question", "answer_1", "answer_2")


@dataclasses.dataclass(frozen=True)
class JudgePrompt:
    name: str  # file stem, e.g. "pairwise-v1"; what configs and records name
    version: int  # bumped only together with the name
    template: str  # user message, with {question}, {answer_1}, {answer_2}
    system: str | None  # system prompt, or None when the source shows none
    source: str  # where the wording comes from

    def __post_init__(self):
        fields = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
        if fields != set(SLOTS):
            raise InputError(
                f"prompt {self.name!r} field 'template': slots must be exactly {sorted(SLOTS)}, "
                f"got {sorted(fields)}"
            )

    @property
    def sha256(self) -> str:
        """Digest of the wording (template + system), recorded so a silent edit is detectable."""
        text = self.template + "\x00" + (self.system or "")
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def render(self, question: str, answer_1: str, answer_2: str) -> str:
        # str.format only substitutes the template's own braces; braces inside answers are kept.
        return self.template.format(question=question, answer_1=answer_1, answer_2=answer_2)


def load_prompt(name: str, directory: str | Path = PROMPT_DIR) -> JudgePrompt:
    """Load ``<directory>/<name>.yaml``; errors name the file and the field."""
    path = Path(directory) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(directory).glob("*.yaml")))
        raise InputError(f"unknown judge prompt {name!r} (no {path}); known prompts: {known}")
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise InputError(f"{where(path)}: expected a mapping")
    for field in ("name", "version", "template", "source"):
        if field not in data:
            raise InputError(f"{where(path, field=field)}: missing")
    if data["name"] != name:
        raise InputError(f"{where(path, field='name')}: {data['name']!r} must equal the file name {name!r}")
    if not isinstance(data["version"], int):
        raise InputError(f"{where(path, field='version')}: must be an integer")
    return JudgePrompt(
        name=data["name"],
        version=data["version"],
        template=data["template"],
        system=data.get("system"),
        source=" ".join(str(data["source"]).split()),
    )


def question_text(record: dict) -> str:
    """The question shown to the judge: the instruction, then the input when there is one."""
    text_input = record.get("input") or ""
    if text_input.strip():
        return f"{record['instruction']}\n\n{text_input}"
    return record["instruction"]

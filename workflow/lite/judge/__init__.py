"""Pairwise judging of two systems' generations, in both orders (the paper's Claude protocol).

Judges: ``reference`` (offline, scores against gold answers), ``claude`` (the anthropic SDK,
cached, retried, optionally via Message Batches) and, for Table 5 only, ``openai`` (any
OpenAI-compatible endpoint through the openai SDK: :mod:`lite.judge.openai_compat`). All go
through the same prompt-order protocol and write the judgment records of ``docs/records.md``.
Nothing here imports torch, and importing this package imports no SDK.

    lite judge --judge reference --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl

The workflow checks the settings with :func:`check_judge_config` when it parses the config (dry
runs too) and calls :func:`check_claude_ready` (key and endpoint) when a run that judges starts,
before any GPU work.
"""

from lite.judge.protocol import Ask, Reply, judge_pair, summarize
from lite.judge.records import load_pair, read_judgments
from lite.judge.reference import ReferenceJudge
from lite.judge.run import JudgingFailed, check_claude_ready, judge_files
from lite.judge.settings import (
    ClaudeSettings,
    JudgeSetupError,
    JudgeUnavailable,
    check_judge_config,
    judge_cli_args,
)

__all__ = [
    "Ask",
    "ClaudeSettings",
    "JudgeSetupError",
    "JudgeUnavailable",
    "JudgingFailed",
    "ReferenceJudge",
    "Reply",
    "check_claude_ready",
    "check_judge_config",
    "judge_cli_args",
    "judge_files",
    "judge_pair",
    "load_pair",
    "read_judgments",
    "summarize",
]

"""Judge two systems' generations pairwise, in both orders, with the reference judge or Claude.

    lite judge --judge reference --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl
    lite judge --judge claude --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl \\
        [--model claude-sonnet-5-5 --max-tokens 512 --prompt pairwise-v1 --cache-dir results/judge_cache \\
         --concurrency 4 --batches --sampling none|temperature0 --api-version YYYY-MM-DD --cost-table CSV]

    lite judge --judge openai --base-url http://127.0.0.1:8000/v1 --model NAME \\
        --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl \\
        [--api-key-env OPENAI_API_KEY --temperature T --max-tokens-field max_completion_tokens]

The openai judge is the optional second judge (lite.judge.openai_compat): any OpenAI-compatible
chat endpoint, through the same prompt files, cache and records as Claude. The judges' options
are the fields of ``ClaudeSettings`` and ``OpenAISettings``.

Writes FILE.jsonl (one judgment per id), FILE.jsonl.summary.json, FILE.jsonl.config.json and,
for the API judges, a row in the cost table (default FILE.jsonl.cost.csv). The Claude judge reads
its key from ANTHROPIC_API_KEY only and honours ANTHROPIC_BASE_URL. By default it sends no
sampling parameter (API 2026-10-21 has none); repeatability comes from the cache. Exits with
status 1, after writing everything, when more than --max-failures orders failed after all retries.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from lite.flags import add_setting_arguments, option_name, settings_from_args
from lite.judge.run import JudgingFailed, judge_files
from lite.judge.settings import WORKFLOW_JUDGES, ClaudeSettings, JudgeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lite.judge.openai_compat import OpenAISettings

    parser.add_argument("--judge", choices=(*WORKFLOW_JUDGES, "openai"), required=True, help="which judge")
    parser.add_argument("--a", required=True, help="generation records of system A (JSONL)")
    parser.add_argument("--b", required=True, help="generation records of system B (same ids)")
    parser.add_argument("--out", required=True, help="judgment records to write (JSONL)")
    add_setting_arguments(parser.add_argument_group("Claude judge"), ClaudeSettings)
    parser.add_argument("--cost-table", default=None, help="CSV to append this run's usage and cost to")
    shared = [field.name for field in dataclasses.fields(JudgeSettings)]
    also = ", ".join(option_name(name) for name in shared)
    second = parser.add_argument_group(f"OpenAI-compatible judge (also takes {also})")
    add_setting_arguments(second, OpenAISettings, skip=shared)
    parser.add_argument(
        "--max-failures", type=int, default=0, help="failed orders tolerated before exiting 1 (%(default)s)"
    )


def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # The SDK logs each HTTP request at INFO; keep its chatter (never the key) out of job logs.
    for noisy in ("httpx", "httpx2", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    claude = judge = None
    if args.judge == "openai":
        if not args.base_url or not args.model:
            sys.exit("lite judge: --judge openai needs --base-url and --model")
        from lite.judge.openai_compat import OpenAIJudge, OpenAISettings

        judge = OpenAIJudge(settings_from_args(OpenAISettings, args))
        logging.getLogger(__name__).info(
            "openai judge settings: %s", json.dumps(dataclasses.asdict(judge.config))
        )
    if args.judge == "claude":
        claude = settings_from_args(ClaudeSettings, args)
        logging.getLogger(__name__).info("claude judge settings: %s", json.dumps(dataclasses.asdict(claude)))
    try:
        summary = judge_files(
            args.judge,
            args.a,
            args.b,
            args.out,
            claude=claude,
            cost_table=args.cost_table,
            max_failures=args.max_failures,
            judge=judge,
        )
    except JudgingFailed as err:
        sys.exit(f"lite judge: {err}")
    print(json.dumps(summary), file=sys.stderr)

"""Judge two systems' generations pairwise, in both orders, with the reference judge or Claude.

    lite judge --judge reference --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl
    lite judge --judge claude --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl \\
        [--model claude-sonnet-5-5 --max-tokens 512 --prompt pairwise-v1 --cache-dir results/judge_cache \\
         --concurrency 4 --batches --sampling none|temperature0 --api-version YYYY-MM-DD --cost-table CSV]

    lite judge --judge openai --base-url http://127.0.0.1:8000/v1 --model NAME \\
        --a GEN_A.jsonl --b GEN_B.jsonl --out FILE.jsonl \\
        [--api-key-env OPENAI_API_KEY --temperature T --max-tokens-field max_completion_tokens]

The openai judge is the optional second judge (lite.judge.openai_compat): any OpenAI-compatible
chat endpoint, through the same prompt files, cache and records as Claude.

Writes FILE.jsonl (one judgment per id), FILE.jsonl.summary.json, FILE.jsonl.config.json and,
for Claude, a row in the cost table (default FILE.jsonl.cost.csv). The Claude judge reads its key
from ANTHROPIC_API_KEY only and honours ANTHROPIC_BASE_URL. By default it sends no sampling
parameter (API 2026-10-21 has none); repeatability comes from the cache. Exits with status 1,
after writing everything, when more than --max-failures orders failed after all retries.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from lite.judge.run import JudgingFailed, judge_files
from lite.judge.settings import SAMPLING, ClaudeSettings

_DEFAULTS = ClaudeSettings()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--judge", choices=("reference", "claude", "openai"), required=True, help="which judge"
    )
    parser.add_argument("--a", required=True, help="generation records of system A (JSONL)")
    parser.add_argument("--b", required=True, help="generation records of system B (same ids)")
    parser.add_argument("--out", required=True, help="judgment records to write (JSONL)")
    claude = parser.add_argument_group("Claude judge")
    claude.add_argument(
        "--model", default=None, help=f"model id (claude default {_DEFAULTS.model}; openai: required)"
    )
    claude.add_argument(
        "--max-tokens", type=int, default=_DEFAULTS.max_tokens, help="reply budget (%(default)s)"
    )
    claude.add_argument(
        "--prompt", default=_DEFAULTS.prompt, help="prompt under lite/judge/prompts (%(default)s)"
    )
    claude.add_argument("--cache-dir", default=_DEFAULTS.cache_dir, help="call cache (%(default)s)")
    claude.add_argument(
        "--concurrency", type=int, default=_DEFAULTS.concurrency, help="parallel calls (%(default)s)"
    )
    claude.add_argument("--batches", action="store_true", help="use the Message Batches API (half price)")
    claude.add_argument(
        "--sampling",
        choices=tuple(SAMPLING),
        default=_DEFAULTS.sampling,
        help="none: send no sampling parameter; temperature0: send temperature 0 with an older API version",
    )
    claude.add_argument("--api-version", default=None, help="anthropic-version header (default: the SDK's)")
    claude.add_argument(
        "--max-retries", type=int, default=_DEFAULTS.max_retries, help="SDK retries (%(default)s)"
    )
    claude.add_argument("--timeout", type=float, default=_DEFAULTS.timeout_s, help="seconds per attempt")
    claude.add_argument(
        "--poll-interval",
        type=float,
        default=_DEFAULTS.poll_interval_s,
        help="batches: seconds between polls",
    )
    claude.add_argument("--cost-table", default=None, help="CSV to append this run's usage and cost to")
    second = parser.add_argument_group(
        "OpenAI-compatible judge (also takes --model, --max-tokens, --prompt, "
        "--cache-dir, --concurrency, --max-retries, --timeout)"
    )
    second.add_argument("--base-url", default=None, help="endpoint up to /v1, e.g. http://127.0.0.1:8000/v1")
    second.add_argument(
        "--api-key-env", default=None, help="environment variable holding the key (default: none sent)"
    )
    second.add_argument("--temperature", type=float, default=None, help="sent when given (default: not sent)")
    second.add_argument(
        "--max-tokens-field",
        choices=("max_tokens", "max_completion_tokens"),
        default="max_tokens",
        help="name of the reply-budget field (%(default)s)",
    )
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

        judge = OpenAIJudge(
            OpenAISettings(
                base_url=args.base_url,
                model=args.model,
                max_tokens=args.max_tokens,
                max_tokens_field=args.max_tokens_field,
                prompt=args.prompt,
                temperature=args.temperature,
                api_key_env=args.api_key_env,
                concurrency=args.concurrency,
                max_retries=args.max_retries,
                timeout_s=args.timeout,
                cache_dir=args.cache_dir,
            )
        )
        logging.getLogger(__name__).info(
            "openai judge settings: %s", json.dumps(dataclasses.asdict(judge.config))
        )
    if args.judge == "claude":
        claude = ClaudeSettings(
            model=args.model or _DEFAULTS.model,
            max_tokens=args.max_tokens,
            prompt=args.prompt,
            sampling=args.sampling,
            api_version=args.api_version,
            concurrency=args.concurrency,
            batches=args.batches,
            max_retries=args.max_retries,
            timeout_s=args.timeout,
            poll_interval_s=args.poll_interval,
            cache_dir=args.cache_dir,
        )
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

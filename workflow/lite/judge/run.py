"""One judging run end to end: two generation files in; judgments, summary, config and cost out;
and the check, before a run that judges with Claude starts, that it can.

Outputs beside ``out``: ``out.config.json`` (resolved settings), ``out.summary.json`` (counts,
win/tie/loss, inconsistency rate, unparseable and failed orders) and, for the API judges, one row
per run in the cost table (default ``out.cost.csv``).

The anthropic SDK takes seconds to import, and the Snakefile imports this module (through
``lite.judge``) whenever it is parsed, dry runs included: so the Claude modules are imported in
the functions that use them, not at the top.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import os
from pathlib import Path

from lite.io import save_resolved_config, write_json, write_jsonl
from lite.judge.api import ApiJudge, now
from lite.judge.cost import append_cost_row, cost_row
from lite.judge.protocol import judge_pair, summarize
from lite.judge.records import load_pair
from lite.judge.reference import ReferenceJudge
from lite.judge.settings import ClaudeSettings, JudgeUnavailable, api_key_from_env, check_judge_config

log = logging.getLogger(__name__)


class JudgingFailed(RuntimeError):
    """More calls failed than allowed; the judgments were written with the failures recorded."""


class JudgingInterrupted(KeyboardInterrupt):
    """Ctrl-C while judging; the message says how many replies this run saved in the cache, which
    ``lite`` prints as its one line (a rerun does not pay for them again)."""


def summary_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".summary.json")


def check_claude_ready(config: dict, probe: bool = False) -> ClaudeSettings | None:
    """Raise unless the configured judge can run: settings, the key and, with ``probe``, one free
    request to the endpoint (``lite.judge.messages_api.check_endpoint``). The workflow calls it when
    a run that judges with Claude starts, before its first job (GPU jobs included).
    """
    settings = check_judge_config(config)
    if settings is None:
        return None
    api_key_from_env()
    if probe:
        from lite.judge.messages_api import check_endpoint, make_client

        check_endpoint(make_client(settings), settings.model)
    return settings


def make_judge(name: str, claude: ClaudeSettings | None = None):
    if name == "reference":
        return ReferenceJudge()
    if name == "claude":
        from lite.judge.claude import ClaudeJudge

        return ClaudeJudge(claude if claude is not None else ClaudeSettings())
    raise ValueError(f"unknown judge {name!r}; choose from reference, claude")


def judge_files(
    judge_name: str,
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    out: str | os.PathLike,
    *,
    claude: ClaudeSettings | None = None,
    cost_table: str | os.PathLike | None = None,
    max_failures: int = 0,
    judge=None,
) -> dict:
    """Judge ``path_a`` against ``path_b`` into ``out``; returns the summary.

    Raises :class:`JudgingFailed` after writing everything when more than ``max_failures``
    orders failed, so a workflow reruns the job (paying only for the failed calls).
    """
    pair = load_pair(path_a, path_b)
    if judge is None:
        judge = make_judge(judge_name, claude)
    settings = judge.settings()
    try:
        records = judge_pair(judge, pair)
    except JudgeUnavailable:
        # The calls paid before the stop are cached; the cost table still gets their row. A run
        # that got no answer at all (a dead endpoint, a rejected key) spent nothing to record.
        if judge.stats.calls_made:
            _add_cost_row(judge, out, cost_table, settings)
        raise
    except KeyboardInterrupt as interrupt:
        if not isinstance(judge, ApiJudge):
            raise
        saved = judge.cache.entries_written
        raise JudgingInterrupted(f"{saved} judgments saved, rerun to continue") from interrupt
    summary = summarize(records)
    write_jsonl(out, records)
    write_json(summary_path(out), summary)
    resolved = {"judge": settings, "a": str(path_a), "b": str(path_b), "max_failures": max_failures}
    if isinstance(judge, ApiJudge):
        resolved[judge.NAME] = dataclasses.asdict(judge.config)
        resolved["prompt_sha256"] = judge.prompt.sha256
        resolved["prompt_source"] = judge.prompt.source
        resolved[f"{judge.SDK}_sdk"] = importlib.metadata.version(judge.SDK)
    save_resolved_config(out, resolved)
    stats = _add_cost_row(judge, out, cost_table, settings)
    if stats is not None:
        summary = {
            **summary,
            "calls_made": stats.calls_made,
            "cached": stats.cached,
            "calls_failed": stats.calls_failed,
            "reasks": stats.reasks,
        }
    if summary["failed_orders"] > max_failures:
        raise JudgingFailed(
            f"{summary['failed_orders']} judge order(s) failed after all retries (allowed: {max_failures}); "
            f"they are recorded with their errors in {out}, counted in {summary_path(out)} and logged above. "
            "Rerun to retry them: cached calls are not paid again."
        )
    return summary


def _add_cost_row(judge, out, cost_table, settings: dict):
    """Append the run's usage to the cost table (judges that pay); returns its stats, or None."""
    if not isinstance(judge, ApiJudge):
        return None
    table = cost_table if cost_table is not None else Path(out).with_name(Path(out).name + ".cost.csv")
    row = cost_row(judge.stats, finished_at=now(), output=str(out), settings=settings, mode=judge.mode)
    append_cost_row(table, row)
    return judge.stats
